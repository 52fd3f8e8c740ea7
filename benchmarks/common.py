"""Helpers shared by the benchmark scripts: timing, tables, and the fast SPD schedule used for toy models."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from paramlens.decompose.spd import FAST_TOY_SCHEDULE as FAST_SPD  # noqa: F401  (re-exported for the scripts)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    table = Table(title=title)
    for key in rows[0]:
        table.add_column(key, justify="left" if isinstance(rows[0][key], str) else "right")
    for row in rows:
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()))
    Console(width=200).print(table)
