"""Progress bars for long work: on stderr, so results on stdout stay clean when piped."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import Progress
from rich.progress import track as rich_track

T = TypeVar("T")


def console() -> Console:
    """The console progress bars draw on (stderr)."""
    return Console(stderr=True)


def track(items: Iterable[T], description: str, total: float | None = None, disable: bool = False,
          transient: bool = False) -> Iterator[T]:
    """``items`` with a progress bar on stderr (rich's ``track``)."""
    return rich_track(items, description=description, total=total, disable=disable, transient=transient,
                      console=console())


def progress(disable: bool = False, transient: bool = True, *columns) -> Progress:
    """A rich ``Progress`` on stderr."""
    return Progress(*columns, disable=disable, transient=transient, console=console())
