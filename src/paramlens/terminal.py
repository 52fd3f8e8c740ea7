"""What the command line prints, and how it ends: one line per error, distinct exit statuses, nothing raw.

Text that comes from a file or a path (tensor names, folder names) is printed without rich markup and with
control characters escaped, so a name such as ``[/]`` or an ANSI/OSC escape sequence shows as written and
never reaches the terminal as a command. Progress bars go to stderr.
"""

from __future__ import annotations

import math
import os
import re
import sys
from enum import IntEnum
from typing import Any

from rich.console import Console

# C0/C1 control characters (ANSI / OSC escapes) and the Unicode bidirectional controls that reorder text on screen
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


class Exit(IntEnum):
    """Exit statuses of ``paramlens``."""

    OK = 0
    BAD_INPUT = 1  # a clear error about a file, a model or data (ParamLensError)
    USAGE = 2  # an unknown command or option, or an option value out of range
    INTERNAL = 3  # an unexpected exception: a defect of ParamLens
    NOT_FOUND = 4  # the analysis ran and found no answer (invert, reassemble)
    INTERRUPTED = 130  # Ctrl-C


def safe(text: Any) -> str:
    """``text`` with control characters (ANSI / OSC escapes, NUL, ...) shown as ``\\xNN``; newlines and tabs kept."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def _console(stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    piped = not stream.isatty()
    return Console(stderr=stderr, markup=False, highlight=False, emoji=False, width=200 if piped else None,
                   soft_wrap=piped)


out = _console(stderr=False)
err = _console(stderr=True)


def say(text: Any) -> None:
    """Print a result line (stdout), escaped."""
    out.print(safe(text))


def note(text: Any) -> None:
    """Print a note (stderr), escaped."""
    err.print(safe(text))


def fail(message: Any, status: Exit) -> None:
    """Print ``message`` as one line on stderr and exit with ``status``."""
    one_line = " ".join(safe(message).split())
    err.print(f"error: {one_line}" if status != Exit.INTERNAL else one_line)
    sys.exit(int(status))


def validation_line(e: Any, prefix: str = "") -> str:
    """A pydantic ``ValidationError`` as one line: each field, the value given and what is allowed."""
    parts = []
    for item in e.errors():
        field = ".".join(str(x) for x in item.get("loc", ())) or "value"
        given = item.get("input")
        ctx = item.get("ctx") or {}
        allowed = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in ctx.items() if k in ("gt", "ge", "lt", "le"))
        shown = f"{given!r}"[:60] if not isinstance(given, dict) else "..."
        parts.append(f"{field}={shown}: {item.get('msg', 'invalid')}" + (f" (allowed: {allowed})" if allowed else ""))
    return prefix + "; ".join(parts)


def finite(value: float | None, option: str, low: float | None = None, high: float | None = None,
           strict_low: bool = False) -> float | None:
    """Check a float option: finite and within ``[low, high]`` (``(low, high]`` with ``strict_low``)."""
    from paramlens.errors import UsageError

    if value is None:
        return None
    bad = not math.isfinite(value) or (low is not None and (value <= low if strict_low else value < low)) \
        or (high is not None and value > high)
    if bad:
        lo = "" if low is None else (f"> {low:g}" if strict_low else f">= {low:g}")
        hi = "" if high is None else f"<= {high:g}"
        rule = " and ".join(x for x in (lo, hi) if x) or "finite"
        raise UsageError(f"invalid value for '{option}': {value!r} (allowed: a finite number {rule})")
    return value


def run_cli(app: Any, state: dict) -> None:
    """Run the typer ``app``; every failure ends as one line on stderr and its :class:`Exit` status (with
    ``state["debug"]`` the traceback is shown instead). A process started by ``torchrun`` ends through
    :func:`_end_worker`."""
    try:
        _run_app(app, state)
    except SystemExit as e:
        if torchrun_worker():
            _end_worker(e.code)
        raise


def torchrun_worker() -> bool:
    """Whether this process is one of several that ``torchrun`` started (``WORLD_SIZE`` above 1)."""
    size = os.environ.get("WORLD_SIZE", "1").strip()
    return size.isdigit() and int(size) > 1


def _end_worker(code: Any) -> None:
    """End a ``torchrun`` worker with status ``code`` (an int, None: 0, else 1) after the exit handlers and a flush
    of stdout/stderr, but without interpreter finalization. A gloo process group's worker threads can still be
    releasing the tensors of a finished collective when the main thread exits; a thread that then waits for the GIL
    while the interpreter finalizes is stopped by an unwind that C++ turns into ``std::terminate``, and the process
    aborts ("terminate called without an active exception") after its work is done. Leaving the group first does
    not prevent it (device meshes and cached sharding specs keep the group alive)."""
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)


def _run_app(app: Any, state: dict) -> None:
    """:func:`run_cli` in any process."""
    import typer
    from pydantic import ValidationError

    from paramlens.errors import Interrupted, NotFound, ParamLensError, UsageError

    os.environ.setdefault("TQDM_DISABLE", "1")  # bars of other libraries (GGUF conversion): stderr stays ours
    try:
        status = app(standalone_mode=False)
    except typer.Abort:
        fail("interrupted", Exit.INTERRUPTED)
    except typer.TyperException as e:  # typer's command-line parsing errors: unknown options, bad values
        if type(e).__name__ == "NoArgsIsHelpError":  # `paramlens` or `paramlens reverse` alone: the help, as is
            out.print(e.format_message())
            sys.exit(int(Exit.USAGE))
        fail(e.format_message() if hasattr(e, "format_message") else e, Exit.USAGE)
    except KeyboardInterrupt:
        fail("interrupted", Exit.INTERRUPTED)
    except Exception as e:  # noqa: BLE001 - the one place every failure is turned into a line and a status
        if state.get("debug"):
            raise
        if isinstance(e, (UsageError, ValidationError)):
            fail(validation_line(e, "invalid option: ") if isinstance(e, ValidationError) else e, Exit.USAGE)
        if isinstance(e, NotFound):
            fail(e, Exit.NOT_FOUND)
        if isinstance(e, Interrupted):
            fail(e, Exit.INTERRUPTED)
        if isinstance(e, ParamLensError):
            fail(e, Exit.BAD_INPUT)
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        fail(f"internal error: {type(e).__name__}: {first}; rerun with --debug and report it", Exit.INTERNAL)
    if status == Exit.INTERRUPTED:  # typer turns Ctrl-C outside our loops into a silent exit status
        fail("interrupted", Exit.INTERRUPTED)
    sys.exit(int(status) if isinstance(status, int) else 0)
