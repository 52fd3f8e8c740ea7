"""What ``paramlens reverse ...`` does: run a reverse-engineering step and write its run folder."""

from __future__ import annotations

from pathlib import Path

from paramlens.report.run import write_run
from paramlens.reverse.identify import Identification, identify
from paramlens.reverse.invert import Inversion, invert_file
from paramlens.reverse.read_circuit import CircuitReading, read_circuit
from paramlens.reverse.reassemble import Reassembly, reassemble
from paramlens.reverse.scan import Scan, scan


def run_scan(path: str, out_dir: Path) -> tuple[Scan, Path]:
    result = scan(path)
    folder = write_run(result, out_dir, f"ParamLens scan: {path}", name="scan",
                       heading=f"Structure scan of {Path(result.path).name}", config={"model": path})
    return result, folder


def run_circuit(path: str, out_dir: Path, domain: str = "auto") -> tuple[CircuitReading, Path]:
    """Lift, simplify, check and export the network at ``path`` (inputs: ``domain``, auto / bits:N / bytes:N)."""
    result = read_circuit(path, input=domain)
    folder = write_run(result, out_dir, f"ParamLens circuit: {path}", name="circuit",
                       heading=f"Boolean circuit of {Path(path).name}", config={"model": path, "input": domain})
    return result, folder


def run_invert(path: str, target: str, low: float, high: float, tol: float, last: str, domain: str = "auto",
               words: Path | None = None, max_seconds: float = 3600.0, out_dir: Path = Path("runs")) -> Inversion:
    """Invert the network at ``path`` (no run folder: the answer is printed; a candidate search is saved in
    ``out_dir/invert``)."""
    return invert_file(path, target, low=low, high=high, tol=tol, last=last, domain=domain, words=words,
                       state_dir=out_dir / "invert", max_seconds=max_seconds)


def run_reassemble(pieces: Path, data: Path, out_dir: Path, target_column: list[str] | None = None,
                   search_rows: int = 1024) -> tuple[Reassembly, Path]:
    """Re-assemble the pieces in ``pieces`` against ``data`` (targets: ``target_column``, default ``pred``) and
    write the run folder."""
    result = reassemble(pieces, data, target_column=target_column, search_rows=search_rows)
    folder = write_run(result, out_dir, f"ParamLens reassemble: {pieces}", name="reassemble",
                       heading=f"Re-assembly of {pieces.name}",
                       config={"pieces": str(pieces), "data": str(data), "target_column": result.targets,
                               "search_rows": search_rows})
    return result, folder


def run_identify(path: str, domain: str, samples: int, seed: int, out_dir: Path) -> tuple[Identification, Path]:
    """Name the layers of the network at ``path`` from the catalogue and write the run folder."""
    result = identify(path, domain=domain, samples=samples, seed=seed)
    folder = write_run(result, out_dir, f"ParamLens identify: {path}", name="identify",
                       heading=f"What the layers of {Path(path).name} compute",
                       config={"model": path, "input": domain, "samples": samples, "seed": seed})
    return result, folder
