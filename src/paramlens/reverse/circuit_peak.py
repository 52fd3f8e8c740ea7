"""Units that test integers for equality: ``ReLU(b + sum_k f_k(K_k))`` over ramps of keys ``K_k``, each
``f_k(K) = lam_k K + sum_c a_c ReLU(K - c)`` (the ramps read plus the keys' own linear parts the row reads), with
``b + sum_k max f_k = 1``.

Every ``f_k`` is an integer, at most its maximum ``m_k``, so the pre-activation ``1 + sum_k (f_k - m_k)`` is at most
1 and at least 1 exactly when every ``f_k`` sits at its maximum: the unit is the AND over ``k`` of
``[u_k <= K_k <= v_k]``, ``[u_k, v_k]`` the integers where ``f_k`` is largest. A readout ``ReLU(1 - sum_k
(ReLU(D_k - c_k) + ReLU(c_k - D_k)))`` (1 iff every ``D_k`` equals ``c_k``) is read so, with two level gates per
key, instead of the ``|D_k - c_k|`` levels it would otherwise need, whose interval bound also loses that each term
is at most 0. ``f_k`` is piecewise linear with breakpoints at the ``c``, so its maximum and where it is reached are
found from its values at those and at the ends of ``K_k``'s proven range.
"""

from __future__ import annotations

from collections import defaultdict

from paramlens.reverse.circuit_lift import MAX_LEAVES, ONE, Form, Lifter, add_into, const, linear


def peak_unit(lf: Lifter, row: list[tuple[int, int]], bias: int, prev: list) -> Form | None:
    """``ReLU`` of the row as one 0/1 gate (an AND of per-key interval tests) when it has the shape above and
    reads some key's linear part (``lam != 0``); None otherwise. The intervals are kept in ``lf.peaks`` by gate."""
    acc: Form = {ONE: bias}
    ramps: dict[int, dict[int, int]] = defaultdict(dict)
    for j, w in row:
        form, ramp = prev[j]
        if ramp is not None:
            ramps[ramp[0]][ramp[1]] = ramps[ramp[0]].get(ramp[1], 0) + w
        add_into(acc, form, w)
    if not ramps:
        return None
    top, tests, reads_key = const(acc), [], False
    for key, by_c in ramps.items():
        peak = _peak(lf, key, by_c, acc)
        if peak is None:
            return None
        top += peak[0]
        tests.append((key, *peak[1:3]))
        reads_key |= peak[3] != 0
    if not reads_key:  # ramps alone: level reads, lifted as usual (their ladders are noted there)
        return None
    rest = linear(acc)
    if rest:
        hi = lf.bound(dict(rest))[1]
        if top + hi > 1 and len(rest) <= MAX_LEAVES:
            hi = lf.tight(dict(rest))[1]
        top += hi
    if top != 1:  # a unit proven 0 is left to the usual lift, whose later reads rely on its form
        return None
    return {ONE: 0, **_all_within(lf, tests, (rest, hi) if rest else None)}


def _peak(lf: Lifter, key: int, by_c: dict[int, int], acc: Form) -> tuple[int, int, int, int] | None:
    """``(max f, u, v, lam)`` of the key's ``f`` (its linear part taken out of ``acc``), or None when ``acc`` holds
    no whole multiple of the key or ``f`` is largest on more than one interval."""
    k = lf.keys[key]
    s0, a0 = k.terms[0]
    if acc.get(s0, 0) % a0:
        return None
    lam = acc.get(s0, 0) // a0
    if any(acc.get(s, 0) != lam * a for s, a in k.terms):
        return None
    for s, _ in k.terms:
        acc.pop(s, None)
    points = sorted({k.lo, k.hi} | {c for c in by_c if k.lo < c < k.hi})
    values = [lam * x + sum(a * max(x - c, 0) for c, a in by_c.items()) for x in points]
    m = max(values)
    at = [i for i, v in enumerate(values) if v == m]
    if at[-1] - at[0] + 1 != len(at):
        return None
    return m, points[at[0]], points[at[-1]], lam


def _all_within(lf: Lifter, tests: list[tuple[int, int, int]], rest: tuple | None) -> Form:
    """``AND_k [u_k <= K_k <= v_k]``, and ``[L >= h]`` for ``rest = (L's terms, h)``, as a form (one gate, or a
    constant)."""
    total: Form = {ONE: 1 - len(tests) - (rest is not None)}
    if rest is not None:
        add_into(total, lf.threshold(*rest), 1)
    for key, u, v in tests:
        inside: Form = {}
        add_into(inside, lf.level(key, u), 1)
        add_into(inside, lf.level(key, v + 1), -1)
        add_into(total, lf.materialise(inside), 1)
    out = lf.materialise({s: a for s, a in total.items() if a or s == ONE})
    for s in out:
        if s != ONE:
            lf.peaks.setdefault(s, (lf.layer, [(lf.keys[key], u, v) for key, u, v in tests], rest is not None))
    return out


def peak_statements(lf: Lifter, outputs: list[int]) -> list[str]:
    """One line per output that is such an equality test: the constant its integers are compared with (as one
    hex string when they are all bytes, each its own 8 bits)."""
    lines = []
    for i, s in enumerate(outputs):
        if s not in lf.peaks:
            continue
        _, tests, rest = lf.peaks[s]
        layer = ", ".join(sorted({str(k.layer) for k, _, _ in tests}))
        points = all(u == v for _, u, v in tests)
        if points and not rest and all(_is_byte(k) for k, _, _ in tests):
            value = bytes(u for _, u, _ in tests).hex()
            lines.append(f"output {i} = equality test: 1 iff the {len(tests)} bytes of layer {layer} "
                         f"(in the network's order) equal 0x{value}")
            continue
        parts = [f"{u}" if u == v else f"{u}..{v}" for _, u, v in tests]
        more = " and a sum of further 0/1 signals is at its largest" if rest else ""
        lines.append(f"output {i} = equality test: 1 iff the {len(tests)} integers of layer {layer} "
                     f"equal ({', '.join(parts)}){more}")
    return lines


def _is_byte(k) -> bool:
    return k.lo == 0 and k.hi == 255 and sorted(a for _, a in k.terms) == [1 << j for j in range(8)]
