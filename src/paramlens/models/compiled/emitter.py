"""A small builder for integer ReLU networks written by hand, layer by layer: ``h_{l+1} = ReLU(W_l h_l + b_l)``.

Values are :class:`Form` s: affine functions ``{row: weight}`` of the rows of one layer plus a constant (key
:data:`ONE`); ``at`` is that layer's depth (0: the inputs; None: a constant, valid anywhere). The :class:`Emitter`
writes the next layer row by row (:meth:`~Emitter.row`, :meth:`~Emitter.const`, :meth:`~Emitter.keep`,
:meth:`~Emitter.pin`) and :meth:`~Emitter.finish` closes it after carrying every word of ``live`` by pass-through
rows. A piece spanning several layers is a *job*: a generator that writes one layer's rows per ``yield`` and returns
its result; :func:`parallel` runs jobs side by side and :meth:`Emitter.run` drives one to its end.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from typing import Any

from paramlens.errors import ParamLensError
from paramlens.models.compiled.sparse_network import SparseLayer

ONE = -1  # the key of a form's constant term
Job = Generator[None, None, Any]


class Form(dict):
    """``sum_k self[k] * row_k + self[ONE]`` over the rows of layer ``at`` (None: a constant)."""

    __slots__ = ("at",)

    def __init__(self, terms: Iterable[tuple[int, int]] = (), at: int | None = None):
        super().__init__(terms)
        self.at = at


Word = list[Form]  # 32 bits (or 8 for a byte), least significant first


def constant(value: int) -> Form:
    return Form({ONE: value} if value else {})


def combine(terms: Iterable[tuple[int, Form]], const: int = 0) -> Form:
    """``sum_i c_i f_i + const`` for ``terms = [(c_i, f_i)]``; the forms must belong to one layer."""
    out = constant(const)
    for c, f in terms:
        if f.at is not None:
            if out.at not in (None, f.at):
                raise ParamLensError(f"a value of layer {f.at} combined with one of layer {out.at}")
            out.at = f.at
        for k, v in f.items():
            out[k] = out.get(k, 0) + c * v
    return out


class Emitter:
    """A network under construction: finished sparse layers and the rows of the layer being written."""

    def __init__(self, n_inputs: int):
        self.layers: list[SparseLayer] = []
        self.inputs = [Form({i: 1}, at=0) for i in range(n_inputs)]
        self.live: dict[str, Word] = {}  # words every finished layer carries
        self._width = n_inputs
        self._rows: list[tuple[dict[int, int], int]] = []
        self._made: dict[int, tuple[Form, Form]] = {}  # id(form) -> (form, its row): one row per form and layer

    @property
    def depth(self) -> int:
        """Finished layers; the rows being written form layer ``depth + 1``."""
        return len(self.layers)

    def row(self, form: Form, bias: int = 0) -> Form:
        """Add ``ReLU(form + bias)`` (``form`` of the newest finished layer); returns it as a value of the layer
        being written."""
        if form.at not in (None, self.depth):
            raise ParamLensError(f"a row of layer {self.depth + 1} reads a value of layer {form.at}")
        weights = {k: v for k, v in form.items() if k != ONE and v}
        self._rows.append((weights, bias + form.get(ONE, 0)))
        return Form({len(self._rows) - 1: 1}, at=self.depth + 1)

    def const(self, value: int) -> Form:
        """A weightless row whose bias is ``value`` (a constant neuron)."""
        return self.row(Form(), value)

    def const_word(self, value: int, bits: int = 32) -> Word:
        """``value`` as ``bits`` constant neurons, one per bit, lowest bit first."""
        return [self.const((value >> i) & 1) for i in range(bits)]

    def keep(self, form: Form) -> Form:
        """``form`` (>= 0) in the layer being written: one pass-through row ``ReLU(form)`` per form and layer.
        Constants and values of the layer being written come back unchanged."""
        if form.at is None or form.at == self.depth + 1:
            return form
        return self._once(form, lambda: self.row(form))

    def pin(self, form: Form) -> Form:
        """As :meth:`keep`, but a constant becomes a constant neuron."""
        if form.at is None:
            return self._once(form, lambda: self.const(form.get(ONE, 0)))
        return self.keep(form)

    def pin_word(self, word: Word) -> Word:
        return [self.pin(f) for f in word]

    def _once(self, form: Form, make: Callable[[], Form]) -> Form:
        if id(form) not in self._made:
            self._made[id(form)] = (form, make())  # holding the form keeps its id unique while it is a key
        return self._made[id(form)][1]

    def finish(self) -> None:
        """Carry the ``live`` words by pass-through rows and close the layer being written."""
        for name, word in self.live.items():
            self.live[name] = [self.keep(f) for f in word]
        self.layers.append(SparseLayer.from_rows(self._width, self._rows))
        self._width, self._rows, self._made = len(self._rows), [], {}

    def run(self, job: Job) -> Any:
        """Drive ``job`` to its end, finishing a layer at each ``yield``; returns its result."""
        while True:
            try:
                next(job)
            except StopIteration as done:
                return done.value
            self.finish()


def parallel(e: Emitter, *jobs: Job) -> Job:
    """Job: ``jobs`` side by side, one layer of each per ``yield``; returns their results in order. The result word
    of a job that ends before the others is carried by pass-through rows."""
    results: list[Any] = [None] * len(jobs)
    active = list(range(len(jobs)))
    while True:
        for i in list(active):
            try:
                next(jobs[i])
            except StopIteration as done:
                results[i] = done.value
                active.remove(i)
        if not active:
            return results
        for i, word in enumerate(results):
            if word is not None:
                results[i] = [e.keep(f) for f in word]
        yield
