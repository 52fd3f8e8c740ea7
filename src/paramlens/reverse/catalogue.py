"""The functions of the input that ``paramlens reverse identify`` looks for among a network's units.

An entry is one small function of the message (the input bytes; for bit inputs, the bytes they spell) with a
name. It returns ``bytes`` of a fixed length (a digest, the message itself) or a non-negative ``int`` (a checksum,
a count). Built in: ``input`` (the bytes themselves), ``md5``, ``sha1``, ``sha256`` (hashlib), ``crc32`` (zlib),
``popcount`` (set bits) and ``byte sum``. Add your own to the default catalogue before calling
:func:`~paramlens.reverse.identify.identify`::

    from paramlens.reverse.catalogue import register
    register("xor", lambda m: functools.reduce(operator.xor, m, 0))

or build a :class:`Catalogue` of your own and pass it as ``catalogue=``. Every unit is compared with each entry's
bits (bit ``j`` of byte ``k`` is position ``8 k + j``), its bytes and (ints) its value, with thresholds
``[byte >= c]`` on them and, for ``input``, the comparisons ``[byte i < byte j]``.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from paramlens.errors import ParamLensError

Function = Callable[[bytes], "bytes | int"]
MAX_NAME = 40


@dataclass(frozen=True)
class Entry:
    """A named function of the input bytes: ``fn(message) -> bytes | int``."""

    name: str
    fn: Function
    one_way: bool = False


class Catalogue:
    """Entries by name, in the order they were registered (earlier entries name a shared column first)."""

    def __init__(self, entries: tuple[Entry, ...] = ()):
        self._entries: dict[str, Entry] = {}
        for entry in entries:
            self.register(entry.name, entry.fn, entry.one_way)

    def register(self, name: str, fn: Function, one_way: bool = False) -> None:
        """Add ``fn`` (``bytes -> bytes | int``) under ``name``; a taken or unprintable name is refused.
        ``one_way``: no input can be computed back from the output (a cryptographic hash), so ``invert`` searches
        candidate inputs instead of solving."""
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME or not name.isprintable():
            raise ParamLensError(f"a catalogue name is 1..{MAX_NAME} printable characters; got {name!r}")
        if not callable(fn):
            raise ParamLensError(f"catalogue entry '{name}': {fn!r} is not a function of the input bytes")
        if name in self._entries:
            raise ParamLensError(f"the catalogue already has an entry '{name}'; choose another name")
        self._entries[name] = Entry(name, fn, one_way)

    def copy(self) -> Catalogue:
        return Catalogue(tuple(self))

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def names(self) -> list[str]:
        return list(self._entries)


BUILTIN = (
    Entry("input", bytes),
    Entry("md5", lambda m: hashlib.md5(m).digest(), one_way=True),
    Entry("sha1", lambda m: hashlib.sha1(m).digest(), one_way=True),
    Entry("sha256", lambda m: hashlib.sha256(m).digest(), one_way=True),
    Entry("crc32", zlib.crc32),
    Entry("popcount", lambda m: int.from_bytes(m, "little").bit_count()),
    Entry("byte sum", sum),
)
CATALOGUE = Catalogue(BUILTIN)


def register(name: str, fn: Function, one_way: bool = False) -> None:
    """Add ``fn`` (``bytes -> bytes | int``) to the default catalogue under ``name`` (see
    :meth:`Catalogue.register`)."""
    CATALOGUE.register(name, fn, one_way)
