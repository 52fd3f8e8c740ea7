"""Running a piece of work on one torch thread.

Work made of many small tensor operations (a layer at a time, a few hundred rows) loses more to thread start-up
and, on a busy machine, to OpenMP threads spinning against other processes than it gains from a second thread:
measured 15-50x slower with 2 threads than with 1 on a 2-core machine with one other busy process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(1)``; the previous count is restored after it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
