"""Inverting a network that tests a one-way function of its input against a stored digest (a hash lock).

:func:`find_lock` runs ``identify`` (:mod:`paramlens.reverse.identify`) and looks for an output unit that is ``P``
iff a one-way catalogue entry (md5, sha1, sha256, or one registered with ``one_way=True``) of the whole input equals
a constant: the digest. SAT and MILP would have to run the hash backwards, which is what a one-way function is
built to prevent, so :func:`search_preimage` guesses instead: candidate messages (:mod:`paramlens.reverse.candidates`)
are hashed in batches with the catalogue's own function and compared with the digest; the winner is then run
through the **network itself** (float64, one layer in memory at a time) and kept only if it gives the target.

The search saves where it is (the next chunk, candidates tried, seconds spent) in a small JSON file every few
seconds, on Ctrl-C and when its time runs out (checked between chunks, seconds apart); the same call resumes
there, on the same digest and word list.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from paramlens.core.progress import progress as progress_bar
from paramlens.reverse.candidates import Candidates, Words
from paramlens.reverse.catalogue import CATALOGUE, Catalogue
from paramlens.reverse.chain import TensorStore, find_chain
from paramlens.reverse.identify import Identification, identify
from paramlens.reverse.identify_domain import SPELLINGS
from paramlens.reverse.invert import Inversion
from paramlens.reverse.probe import run_chain

BATCH = 1 << 16  # candidates made and hashed at once
SAVE_EVERY = 5.0  # seconds between two saves of the search state
LOCK_CLAIM = re.compile(r"is (?P<value>[-0-9.e]+) iff (?P<entry>.+?)\(input(?: as bytes, (?P<spelling>[a-z ]+))?\) "
                        r"equals (?P<digest>(?:[0-9a-f]{2})+)")


@dataclass
class Lock:
    """Output unit ``unit`` of a network reading ``inputs`` (``bytes:N`` / ``bits:N``, ``spelling``: how bits spell
    bytes) is ``value`` iff ``entry`` of the input message equals ``digest``; ``confirmed`` of ``samples`` random
    inputs agreed (identify's check); ``layers``: the network's depth."""

    entry: str
    digest: bytes
    unit: int
    value: float
    inputs: str
    spelling: str
    confirmed: int
    samples: int
    layers: int

    @property
    def kind(self) -> str:
        return self.inputs.split(":")[0]

    @property
    def n_inputs(self) -> int:
        return int(self.inputs.split(":")[1])

    @property
    def message_bytes(self) -> int:
        """The longest message the inputs hold (zero-padded to it)."""
        return self.n_inputs if self.kind == "bytes" else self.n_inputs // 8

    def encode(self, message: bytes) -> np.ndarray:
        """The network's input row ``(n_inputs,)`` float64 for ``message`` zero-padded to :attr:`message_bytes`."""
        codes = np.frombuffer(message.ljust(self.message_bytes, b"\0"), dtype=np.uint8)
        if self.kind == "bytes":
            return codes.astype(np.float64)
        order = "big" if self.spelling == SPELLINGS[1] else "little"
        bits = np.unpackbits(codes, bitorder=order).astype(np.float64)
        return np.concatenate([bits, np.zeros(self.n_inputs - len(bits))])

    def statement(self) -> str:
        return (f"output unit {self.unit} is {self.value:g} iff {self.entry}(input) equals {self.digest.hex()} "
                f"(inputs {self.inputs}; confirmed on {self.confirmed}/{self.samples} random inputs)")


def find_lock(path: str | Path, domain: str = "auto", samples: int = 64, catalogue: Catalogue | None = None,
              progress: bool = True) -> tuple[Lock | None, Identification]:
    """Identify the network at ``path`` and return the hash lock on its output, if there is one."""
    catalogue = catalogue or CATALOGUE
    found = identify(path, domain=domain, samples=samples, catalogue=catalogue, progress=progress)
    one_way = {e.name for e in catalogue if e.one_way}
    for s in found.found():
        m = LOCK_CLAIM.fullmatch(s.claim)
        if s.kind == "equality" and s.output and m and m["entry"] in one_way and s.confirmed == s.samples:
            return Lock(m["entry"], bytes.fromhex(m["digest"]), s.units[0], float(m["value"]), found.domain,
                        m["spelling"] or "", s.confirmed, s.samples, found.n_layers), found
    return None, found


@dataclass
class SearchState:
    """Where a search is: the ``chunk`` to do next, ``tried`` candidates and ``seconds`` spent so far, and the
    preimage once ``found`` (hex). ``entry``, ``digest``, ``words`` (fingerprint) and ``max_bytes`` say which search
    it belongs to."""

    entry: str
    digest: str
    words: str
    max_bytes: int
    chunk: int = 0
    tried: int = 0
    seconds: float = 0.0
    found: str | None = None

    def same_search(self, other: SearchState) -> bool:
        return (self.entry, self.digest, self.words, self.max_bytes) == (
            other.entry, other.digest, other.words, other.max_bytes)


def load_state(path: Path | None, fresh: SearchState) -> tuple[SearchState, str]:
    """The saved state at ``path`` when it belongs to the same search, else ``fresh``; and a note on which."""
    if path is None or not path.is_file():
        return fresh, ""
    try:
        saved = SearchState(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        return fresh, f"{path}: not a saved search; starting over"
    if not saved.same_search(fresh):
        return fresh, f"{path}: saved for another digest or word list; starting over"
    return saved, f"resuming at chunk {saved.chunk:,} after {saved.tried:,} candidates ({saved.seconds:.0f} s)"


def save_state(path: Path | None, state: SearchState) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state), indent=1))
        tmp.replace(path)


@dataclass
class SearchOutcome:
    """The preimage ``message`` (None: not found), the final ``state``, why the search ended (``stopped``: "found",
    "exhausted", "time limit" or "interrupted"), the candidates per second of this run, and a note on resuming."""

    message: bytes | None
    state: SearchState
    stopped: str
    rate: float
    resumed: str


def search_preimage(lock: Lock, words: Words, *, state_file: Path | None = None, max_seconds: float = 3600.0,
                    catalogue: Catalogue | None = None, workers: int | None = None,
                    progress: bool = True) -> SearchOutcome:
    """Hash candidates from ``words`` with the lock's function until one gives its digest, ``max_seconds`` pass,
    or the candidates run out; saving the state to ``state_file`` (see the module docstring). ``workers``:
    processes hashing chunks side by side (default: one per usable CPU core; 1 hashes in this process)."""
    fn = {e.name: e.fn for e in (catalogue or CATALOGUE)}[lock.entry]
    state, resumed = load_state(state_file, SearchState(lock.entry, lock.digest.hex(), words.fingerprint,
                                                        lock.message_bytes))
    if state.found is not None:
        return SearchOutcome(bytes.fromhex(state.found), state, "found", 0.0, resumed)
    run = _Run(state, state_file, max_seconds)
    global _JOB
    _JOB = (fn, lock.digest, lock.message_bytes, Candidates(words, lock.message_bytes))
    workers = workers or len(os.sched_getaffinity(0))
    chunks = range(state.chunk, _JOB[3].n_chunks)
    pool = multiprocessing.get_context("fork").Pool(workers) if workers > 1 else None
    try:
        with progress_bar(disable=not progress) as bar:
            task = bar.add_task("searching", total=None)
            results = pool.imap(_hash_chunk, chunks) if pool else map(_hash_chunk, chunks)
            stopped = run.over(results, lambda what: bar.update(task, description=run.line(what)))
    except KeyboardInterrupt:
        stopped = "interrupted"
    finally:
        _JOB = None
        if pool is not None:
            pool.terminate()
    run.save()
    return SearchOutcome(run.message, state, stopped, run.rate(), resumed)


_JOB = None  # (function, digest, message length, Candidates) of the search running (read by forked workers)


def _hash_chunk(k: int) -> tuple[int, str, int, list[bytes]]:
    """Chunk ``k`` of the running search: its number, what it holds, how many candidates, those giving the digest."""
    fn, digest, size, candidates = _JOB
    what, messages = candidates.chunk(k)
    count, hits = 0, []
    while batch := list(itertools.islice(messages, BATCH)):
        count += len(batch)
        hits += [m for m in batch if fn(m.ljust(size, b"\0")) == digest]
    return k, what, count, hits


class _Run:
    """One sitting of a search: the results of the chunks in order, the clock and the saves."""

    def __init__(self, state: SearchState, state_file: Path | None, max_seconds: float):
        self.state, self.state_file, self.max_seconds = state, state_file, max_seconds
        self.start = self.saved_at = time.perf_counter()
        self.base_seconds, self.tried_here = state.seconds, 0
        self.message: bytes | None = None

    def over(self, results, show) -> str:
        for k, what, count, hits in results:
            self.tried_here += count
            self.state.tried += count
            if hits:
                self.message = hits[0]
                self.state.found = hits[0].hex()
                return "found"
            show(what)
            self.state.chunk = k + 1  # (a search stopped inside a chunk redoes it)
            if self.elapsed() > self.max_seconds:
                return "time limit"
            if time.perf_counter() - self.saved_at > SAVE_EVERY:
                self.save()
        return "exhausted"

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def rate(self) -> float:
        return self.tried_here / max(self.elapsed(), 1e-9)

    def line(self, what: str) -> str:
        return f"{what}: {self.state.tried:,} candidates, {self.rate():,.0f}/s"

    def save(self) -> None:
        self.state.seconds = self.base_seconds + self.elapsed()
        self.saved_at = time.perf_counter()
        save_state(self.state_file, self.state)


def confirm(path: str | Path, lock: Lock, message: bytes) -> list[float]:
    """The network's outputs on ``message`` (run exactly, every layer Linear + ReLU)."""
    store = TensorStore(path)
    layers, _ = find_chain(store)
    x = torch.from_numpy(lock.encode(message)).unsqueeze(0)
    last = len(layers) - 1
    return run_chain(store, layers, x, {last})[last].clamp_min(0)[0].tolist()


def why_not_solve(lock: Lock, units: int) -> str:
    """Why SAT and MILP are not run on a hash lock, in one sentence."""
    return (f"{lock.entry} is a one-way hash: SAT or MILP would have to run it backwards through {lock.layers:,} "
            f"layers ({units:,} ReLUs, no useful bounds on the {8 * lock.message_bytes} input bits), which no solver "
            f"finishes, so candidate inputs are hashed and compared with the digest instead")


def invert_lock(path: str | Path, lock: Lock, words: Words, units: int, *, state_dir: Path | None = None,
                max_seconds: float = 3600.0, progress: bool = True) -> Inversion:
    """Search a preimage of the lock's digest and confirm it on the network (see the module docstring); the search
    is saved in ``state_dir`` as ``search-<function>-<digest>-<word list fingerprint>.json``."""
    state_file = (state_dir / f"search-{lock.entry}-{lock.digest.hex()}-{words.fingerprint}.json"
                  if state_dir is not None else None)
    out = search_preimage(lock, words, state_file=state_file, max_seconds=max_seconds, progress=progress)
    state = out.state
    done = (f"{state.tried:,} candidates in {state.seconds:.1f} s"
            + (f" ({out.rate:,.0f}/s this run)" if out.rate else "") + (f"; {out.resumed}" if out.resumed else ""))
    tried = f"identify: {lock.statement()}; {why_not_solve(lock, units)}; words: {words.source}; {done}"
    if out.message is None:
        resume = f" (saved in {state_file}: the same command resumes)" if state_file else ""
        why = {"exhausted": "no candidate gives the digest: try a larger --words list",
               "time limit": f"no preimage within --max-seconds {max_seconds:g}{resume}",
               "interrupted": f"interrupted{resume}"}[out.stopped]
        return Inversion(False, None, tried, why)
    got = confirm(path, lock, out.message)
    if got[lock.unit] != lock.value:
        return Inversion(False, None, tried, f"{out.message!r} gives the digest but the network outputs {got} on it: "
                                             "the network does not compute what identify found on every input")
    return Inversion(True, lock.encode(out.message).tolist(), tried,
                     f"preimage {out.message!r}: {lock.entry} gives {lock.digest.hex()}, and the network itself outputs "
                     f"{got[lock.unit]:g} at unit {lock.unit} on it", message=out.message)
