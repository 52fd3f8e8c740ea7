"""How much memory a piece of work will take, checked before it starts."""

from __future__ import annotations

import os

from paramlens.errors import ParamLensError

GiB = 1 << 30


def available_bytes() -> int:
    """Memory this process can still use: ``MemAvailable`` of ``/proc/meminfo``, else the physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits(n_bytes: float, what: str, fix: str = "", share: float = 0.8) -> None:
    """Raise one line when ``n_bytes`` (an estimate) exceeds ``share`` of the available memory.

    Args:
        n_bytes: estimated peak bytes of the work.
        what: the work, e.g. ``"decompose with --C 100000"``.
        fix: what the user can change, e.g. ``"lower --C or --batch-size"``.
    """
    free = available_bytes()
    if n_bytes > share * free:
        raise ParamLensError(f"{what} needs about {n_bytes / GiB:.1f} GiB of memory and {free / GiB:.1f} GiB are "
                             f"available{'; ' + fix if fix else ''}")
