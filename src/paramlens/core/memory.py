"""How much memory a piece of work will take, checked before it starts."""

from __future__ import annotations

import os

import torch

from paramlens.errors import ParamLensError

GiB = 1 << 30


def available_bytes(device: torch.device | None = None) -> int:
    """Memory this process can still use: on a CUDA ``device`` its free memory; otherwise ``MemAvailable`` of
    ``/proc/meminfo``, else the physical memory."""
    if device is not None and device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits(n_bytes: float, what: str, fix: str = "", share: float = 0.8, device: torch.device | None = None) -> None:
    """Raise one line when ``n_bytes`` (an estimate) exceeds ``share`` of the memory available (on ``device``, None:
    the host's).

    Args:
        n_bytes: estimated peak bytes of the work.
        what: the work, e.g. ``"decompose with --C 100000"``.
        fix: what the user can change, e.g. ``"lower --C or --batch-size"``.
    """
    free = available_bytes(device)
    if n_bytes > share * free:
        raise ParamLensError(f"{what} needs about {n_bytes / GiB:.1f} GiB of memory and {free / GiB:.1f} GiB are "
                             f"available{'; ' + fix if fix else ''}")
