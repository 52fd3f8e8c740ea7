"""Four RASP-style programs and their compiled models (inputs of 1 .. ``max_len`` tokens after a BOS).

- ``reverse``: output ``i`` = token ``length - 1 - i``. ``length`` (selector width of an all-true selector:
  one head counting, one MLP decoding), ``opp_index = length - 1 - index`` (a sequence-map table), then one head
  selecting the key whose index is ``opp_index`` and copying its token.
- ``histogram``: output ``i`` = how often token ``i`` occurs. One selector width of ``tokens == tokens``.
- ``sort``: the tokens in ascending order, repeats kept (stable). ``key = (token, index)`` (a sequence-map
  table: keys become distinct), ``target = #keys smaller than mine`` (selector width of ``key < key``), then
  one head selecting the key whose index is ``target`` and copying its token.
- ``frac_prevs``: output ``i`` = the fraction of tokens ``0 .. i`` that are ``token`` (a ``Fraction``).
  ``is_token`` (a table to 0/1), its numerical mean over the prefix (one head), then a table decoding the mean
  into a fraction. Positions with no ``token`` so far do not need the first two.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from paramlens.models.transformers.compile import compile_program
from paramlens.models.transformers.compiled import CompiledTransformer
from paramlens.models.transformers.rasp import (
    EQ,
    LEQ,
    LT,
    TRUE,
    Aggregate,
    Map,
    Select,
    SelectorWidth,
    SequenceMap,
    SOp,
    indices,
    tokens,
)


def make_length() -> SOp:
    """The input length at every position."""
    return SelectorWidth(Select(tokens, tokens, TRUE), name="length")


def make_reverse() -> SOp:
    """Output ``i`` = token ``length - 1 - i``."""
    opp = SequenceMap(lambda n, i: n - 1 - i, make_length(), indices, name="opp_index")
    return Aggregate(Select(indices, opp, EQ), tokens, name="reverse")


def make_histogram() -> SOp:
    """Output ``i`` = the number of positions holding token ``i``."""
    return SelectorWidth(Select(tokens, tokens, EQ), name="histogram")


def make_sort() -> SOp:
    """The tokens in ascending order (stable: equal tokens keep their order)."""
    key = SequenceMap(lambda t, i: (t, i), tokens, indices, name="sort_key")
    target = SelectorWidth(Select(key, key, LT), name="target_pos")
    return Aggregate(Select(target, indices, EQ), tokens, name="sort")


def make_frac_prevs(token: Any, max_len: int) -> SOp:
    """Output ``i`` = ``Fraction(#{j <= i: tokens[j] == token}, i + 1)``."""
    is_token = Map(lambda t: 1 if t == token else 0, tokens, numerical=True, name="is_token")
    mean = Aggregate(Select(indices, indices, LEQ), is_token, numerical=True, name="prefix_mean")
    return Map(lambda x: Fraction(x).limit_denominator(max_len), mean, name="frac_prevs")


def reverse_model(vocab: Sequence[Any] = ("a", "b", "c"), max_len: int = 5) -> CompiledTransformer:
    """``reverse`` compiled: 3 layers, mechanisms ``L0H0`` (count), ``L0MLP:length``, ``L1MLP:opp_index``,
    ``L2H0`` (copy)."""
    return compile_program(make_reverse(), vocab, max_len, name="reverse")


def histogram_model(vocab: Sequence[Any] = ("a", "b", "c", "d"), max_len: int = 5) -> CompiledTransformer:
    """``histogram`` compiled: 1 layer, mechanisms ``L0H0`` (count), ``L0MLP:histogram``."""
    return compile_program(make_histogram(), vocab, max_len, name="histogram")


def sort_model(vocab: Sequence[Any] = (1, 2, 3, 4), max_len: int = 5) -> CompiledTransformer:
    """``sort`` compiled: 3 layers, mechanisms ``L0MLP:sort_key``, ``L1H0`` (count smaller keys),
    ``L1MLP:target_pos``, ``L2H0`` (copy)."""
    return compile_program(make_sort(), vocab, max_len, name="sort")


def frac_prevs_model(vocab: Sequence[Any] = ("a", "b", "c"), max_len: int = 5, token: Any = "a"
                     ) -> CompiledTransformer:
    """``frac_prevs`` compiled: 2 layers, mechanisms ``L0MLP:is_token``, ``L1H0`` (prefix mean),
    ``L1MLP:frac_prevs``."""
    return compile_program(make_frac_prevs(token, max_len), vocab, max_len, name="frac_prevs")


#: name -> function returning the compiled model
PROGRAMS = {"reverse": reverse_model, "histogram": histogram_model, "sort": sort_model, "frac_prevs": frac_prevs_model}
