"""What ``paramlens reverse ...`` does: run a reverse-engineering step and write its report."""

from __future__ import annotations

from pathlib import Path

from paramlens.core.runs import new_run_dir
from paramlens.report import Section, write_report
from paramlens.reverse.invert import Inversion, invert_file
from paramlens.reverse.read_circuit import CircuitResult, read_circuit
from paramlens.reverse.reassemble import Reassembly, reassemble
from paramlens.reverse.scan import ScanResult, scan


def scan_section(folder: Path, result: ScanResult, prefix: str = "") -> Section:
    return Section(title=f"Structure scan of {Path(result.path).name}", text=result.summary(),
                   figures=result.figures(folder, prefix=prefix), table=result.table())


def run_scan(path: str, out_dir: Path) -> tuple[ScanResult, Path]:
    result = scan(path)
    folder = new_run_dir(out_dir, "scan")
    result.save(folder)
    write_report(folder, f"ParamLens scan: {path}", [], [scan_section(folder, result)])
    return result, folder


def run_circuit(path: str, out_dir: Path) -> tuple[CircuitResult, Path]:
    """Lift, simplify, check and export the network at ``path``."""
    result = read_circuit(path)
    folder = new_run_dir(out_dir, "circuit")
    result.save(folder)
    write_report(folder, f"ParamLens circuit: {path}", [], [Section(
        title=f"Boolean circuit of {Path(path).name}", text=result.summary(), table=result.table())])
    return result, folder


def run_invert(path: str, target: str, low: float, high: float, tol: float, last: str) -> Inversion:
    """Invert the network at ``path`` (no run folder: the answer is printed)."""
    return invert_file(path, target, low=low, high=high, tol=tol, last=last)


def run_reassemble(pieces: Path, data: Path, out_dir: Path, search_rows: int = 256) -> tuple[Reassembly, Path]:
    """Re-assemble the pieces in ``pieces`` against ``data`` and write the report."""
    result = reassemble(pieces, data, search_rows=search_rows)
    folder = new_run_dir(out_dir, "reassemble")
    result.save(folder)
    write_report(folder, f"ParamLens reassemble: {pieces}", [], [Section(
        title=f"Re-assembly of {pieces.name}", text=result.summary(), figures=result.figures(folder))])
    return result, folder
