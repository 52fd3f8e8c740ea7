"""C code compiled on first use, for the hot loops of decompositions on CPU (:mod:`~paramlens.decompose.gate_kernel`,
:mod:`~paramlens.decompose.noise`).

A source is compiled by the system C compiler (``$CC``, else ``cc``/``gcc``/``clang``) for this CPU (``-march=native``,
full-width AVX-512 vectors and OpenMP where the compiler has them: the first of :data:`FLAG_SETS` that builds) and
loaded with ctypes. Libraries are cached under ``$PARAMLENS_KERNEL_CACHE`` (default: ``paramlens-kernels-<uid>`` in the
temporary directory), a folder that must be the user's and not writable by others, keyed by source, compiler, flags
and CPU. Without a working compiler, on Windows, or with ``PARAMLENS_NATIVE=0``, :func:`library` gives None and the
callers run plain torch.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: compiler flags tried in order. Full-width vectors where the CPU has AVX-512 (compilers default to 256 bits there)
FLAG_SETS = (["-march=native", "-mprefer-vector-width=512", "-fopenmp"], ["-march=native", "-fopenmp"],
             ["-march=native"], [])

Signatures = dict[str, list[type]]
"""``{function name: ctypes argument types}`` of a library."""


def compiler() -> str | None:
    """The C compiler: ``$CC``, else ``cc``, ``gcc`` or ``clang`` on the path (None: none)."""
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def enabled() -> bool:
    """Whether native code may be used at all (not Windows, not disabled by ``PARAMLENS_NATIVE=0``)."""
    return os.environ.get("PARAMLENS_NATIVE", "1") != "0" and sys.platform != "win32"


def library(name: str, source: str, signatures: Signatures) -> ctypes.CDLL | None:
    """``source`` built with the first of :data:`FLAG_SETS` that compiles, loaded, its functions given their argument
    types; None when native code is off or nothing builds. Callers cache the result."""
    cc = compiler()
    if not enabled() or cc is None:
        return None
    return next((lib for flags in FLAG_SETS if (lib := build(name, source, signatures, cc, flags)) is not None), None)


def build(name: str, source: str, signatures: Signatures, cc: str, flags: list[str]) -> ctypes.CDLL | None:
    """``source`` compiled by ``cc`` with ``flags`` (cached) and loaded with ``signatures``; None if it does not
    compile or load."""
    key = hashlib.sha256("\0".join([source, cc, *flags, _cpu_signature()]).encode()).hexdigest()[:24]
    default = Path(tempfile.gettempdir()) / f"paramlens-kernels-{os.getuid()}"
    cache = Path(os.environ.get("PARAMLENS_KERNEL_CACHE") or default)
    path = cache / f"{name}-{key}.so"
    try:
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = cache.stat()
        if st.st_uid != os.getuid() or st.st_mode & 0o022:
            return None  # a library others can write to is not loaded
        if not path.exists():
            with tempfile.TemporaryDirectory(dir=cache) as tmp:
                src, out = Path(tmp) / f"{name}.c", Path(tmp) / f"{name}.so"
                src.write_text(source)
                cmd = [cc, "-O3", "-fPIC", "-shared", "-fno-math-errno", "-fno-trapping-math", *flags, str(src),
                       "-o", str(out)]
                if subprocess.run(cmd, check=False, capture_output=True, timeout=120).returncode != 0:
                    return None
                os.replace(out, path)  # atomic: concurrent processes see a whole library or none
        lib = ctypes.CDLL(str(path))
    except (OSError, subprocess.SubprocessError):
        return None
    for function, argtypes in signatures.items():
        getattr(lib, function).argtypes = argtypes
    return lib


def _cpu_signature() -> str:
    """What ``-march=native`` depends on: the CPU's feature flags (a shared cache must not mix machines)."""
    try:
        flags = [ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith(("flags", "Features"))]
        return flags[0] if flags else platform.processor()
    except OSError:
        return platform.machine() + platform.processor()
