"""Candidate messages for a preimage search: words, pairs and triples of words, in a fixed order, most likely first.

Words come from a word list: ``--words FILE`` (one word per line, kept in the file's order: put the likeliest
first), or the system list of the Debian package ``wamerican`` (:data:`SYSTEM_LISTS`), of which the entries made
of lowercase letters only are kept (no proper nouns, no possessives) and ranked by how often they occur in the
fortune-cookie texts of the Debian package ``fortunes`` when it is installed (:data:`CORPUS`), shorter words first
after those.

A candidate is a tuple of words joined by one of :data:`SEPARATORS`, in one case style (:data:`STYLES`: as listed, Title Each, UPPER, Title first). The
candidates are cut into numbered chunks, in this order: every single word; then, for rank ``r = 0, 1, ...``, the
pairs whose less likely word has rank ``r``, followed by the triples whose least likely word has rank ``t``,
for each ``t`` with ``t^3 <= r^2`` not done yet (so triples take about as long as pairs); then the triples left. A search that stops
saves the number of the next chunk and resumes there.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from paramlens.errors import ParamLensError

SYSTEM_LISTS = (Path("/usr/share/dict/american-english"), Path("/usr/share/dict/words"))
CORPUS = Path("/usr/share/games/fortunes")
SEPARATORS = ("", " ", "-", "_", ".")
STYLES = ((0, 0), (1, 1), (2, 2), (1, 0))  # per case style: the form (listed, Title, UPPER) of the first word, the others
LOWERCASE = re.compile(r"[a-z]+")
MAX_WORDS = 5_000_000


@dataclass
class Words:
    """The word list of a search, likeliest first; ``source``: where it came from, in words; ``fingerprint``: a
    hash of the words in order (a saved search resumes only on the same list)."""

    words: list[str]
    source: str

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256("\n".join(self.words).encode()).hexdigest()[:16]


def load_words(path: str | Path | None = None) -> Words:
    """The words of ``path`` (one per line, the file's order), or the ranked system list (module docstring)."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ParamLensError(f"--words {path}: no such file (give a text file with one word per line)")
        words = _unique(line.strip() for line in path.read_text(errors="replace").splitlines())
        if not words:
            raise ParamLensError(f"--words {path}: holds no words (one word per line)")
        return Words(words, f"{path} ({len(words):,} words, in the file's order)")
    system = next((p for p in SYSTEM_LISTS if p.is_file()), None)
    if system is None:
        raise ParamLensError("no word list: install one (apt-get install wamerican) or give --words FILE")
    words = _unique(w for w in system.read_text(errors="replace").split() if LOWERCASE.fullmatch(w))
    counts = _corpus_counts()
    words.sort(key=lambda w: (-counts.get(w, 0), len(w)))
    seen = sum(w in counts for w in words)
    ranked = f"ranked by frequency in {CORPUS} ({seen:,} seen there), then shortest first" if counts else \
        "shortest first (install fortunes to rank them by frequency)"
    return Words(words, f"{system} ({len(words):,} lowercase words, {ranked})")


def _unique(items) -> list[str]:
    out = list(dict.fromkeys(w for w in items if w and not w.isspace()))
    if len(out) > MAX_WORDS:
        raise ParamLensError(f"the word list holds {len(out):,} words; at most {MAX_WORDS:,} are searched")
    return out


def _corpus_counts() -> Counter:
    """Lowercase word counts over the fortune texts (empty when they are not installed)."""
    counts: Counter = Counter()
    if not CORPUS.is_dir():
        return counts
    for path in CORPUS.iterdir():
        if path.is_file() and not path.suffix:
            counts.update(LOWERCASE.findall(path.read_text(errors="replace").lower()))
    return counts


class Candidates:
    """The candidate messages built from ``words`` no longer than ``max_bytes`` bytes (UTF-8), in chunks."""

    def __init__(self, words: Words, max_bytes: int):
        self.words = words
        self.max_bytes = max_bytes
        self._forms = [(w.encode(), w.title().encode(), w.upper().encode()) for w in words.words]

    @property
    def n_chunks(self) -> int:
        """Singles, then pairs and triples at every rank."""
        return 1 + 2 * len(self._forms)

    def chunk(self, k: int) -> tuple[str, Iterator[bytes]]:
        """What chunk ``k`` holds, and its candidates (made as they are read)."""
        arity, rank = next(itertools.islice(self._plan(), k, None))
        return self._describe(arity, rank), self._messages(_tuples(len(self._forms), arity, rank))

    def chunks(self, start: int = 0) -> Iterator[tuple[int, str, Iterator[bytes]]]:
        """``(chunk number, what it holds, its candidates)`` from chunk ``start`` on."""
        for k, (arity, rank) in enumerate(self._plan()):
            if k >= start:
                yield k, self._describe(arity, rank), self._messages(_tuples(len(self._forms), arity, rank))

    def _plan(self) -> Iterator[tuple[int, int]]:
        """``(arity, rank)`` of every chunk, in search order (see the module docstring)."""
        n = len(self._forms)
        yield 1, n - 1
        triples = 0
        for r in range(n):
            yield 2, r
            while triples ** 3 <= r * r and triples < n:
                yield 3, triples
                triples += 1
        for t in range(triples, n):
            yield 3, t

    def _describe(self, arity: int, rank: int) -> str:
        n = len(self._forms)
        if arity == 1:
            return f"single words ({n:,})"
        return f"word {'pairs' if arity == 2 else 'triples'} up to rank {rank + 1:,} of {n:,}"

    def _messages(self, tuples: Iterator[tuple[int, ...]]) -> Iterator[bytes]:
        """Every tuple joined in every case style and separator, each distinct spelling once per tuple."""
        limit = self.max_bytes
        for t in tuples:
            words = [self._forms[i] for i in t]
            spelled = []
            for first, rest in STYLES:
                parts = [words[0][first]] + [w[rest] for w in words[1:]]
                if parts not in spelled:
                    spelled.append(parts)
            for parts in spelled:
                if sum(map(len, parts)) > limit:
                    continue
                for sep in SEPARATORS if len(parts) > 1 else ("",):
                    message = sep.encode().join(parts)
                    if len(message) <= limit:
                        yield message


def _tuples(n: int, arity: int, rank: int) -> Iterator[tuple[int, ...]]:
    """Singles: every word (``rank`` is the last); pairs and triples: every tuple of ranks ``<= rank`` that holds
    ``rank``."""
    if arity == 1:
        return ((i,) for i in range(n))
    return (t for t in itertools.product(range(rank + 1), repeat=arity) if rank in t)
