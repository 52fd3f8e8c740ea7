"""MD5, SHA-1 and SHA-256 as integer ReLU networks written layer by layer with an :class:`Emitter` (no circuit,
no compiler).

Input: ``n_bytes`` byte codes (integers 0..255), one per input; the network hashes exactly those bytes (padding and
length are constant neurons inside). Output: the digest bits (output ``8 k + j`` = bit ``j`` of digest byte ``k``),
or, given ``target``, one neuron that is 1 iff the digest equals it. How the pieces are written:

- bits: seven layers peel each byte from the top, ``step(x >= 2^t) = ReLU(x - 2^t + 1) - ReLU(x - 2^t)`` (two
  rows, their difference read by the next layer); the remainder rides on a pass-through row;
- constants (initial state, padding and length, each step's round constant): weightless rows whose bias is the bit,
  one per bit, lowest first;
- boolean functions: one layer, a few ReLU rows per bit whose signed sum is the function: choice
  ``ReLU(x + y - 1) + ReLU(z - x)``, majority ``ReLU(s - 1) - ReLU(s - 2)``, parity tents ``s - 2 ReLU(s - 1) +
  2 ReLU(s - 2) - ...`` over the sum ``s`` of the inputs (constant inputs fold into the biases);
- adders: ``block`` bits per layer. The first layer turns every later column's operand count into one integer
  row; in each layer bit ``j`` of the block is ``floor(V_j / 2^j) mod 2``, ``V_j`` the carry in plus the block's
  columns up to ``j``, written as an alternating sum of threshold steps on ``V_j``; the carry out (the even steps
  of the top bit) is read by the next layer's block;
- rotations and shifts are rewiring; every value still needed later rides on pass-through rows;
- readout: rows carrying the digest bits, or per digest byte (or bit) ``ReLU(D - c)`` and ``ReLU(c - D)``, the
  target ``c`` as negated bias, then one output ``ReLU(1 - sum)``.

One MD5 step is a function layer (F and G take 2 rows a bit, H and I 3, so widths differ by round) and two adders,
``a + f + K + M`` then ``b + rotl(., s)``; one SHA-1 or SHA-256 step is a function layer and one adder per new word
(SHA-256: ``e`` and ``a`` side by side), with the schedule word 16 steps ahead computed alongside. Depth:
``7 + steps * (1 + (MD5 2, SHA 1) * 32 / block) + 2 + 32 / block`` layers, one more with a target. At full steps,
``block=8`` and 16-byte messages (widths grow with the message: its bits ride along): MD5 589 layers, at most 416
wide, 64 M parameters (245 MiB as float32 safetensors); SHA-1 413 layers, 928 wide, 216 M (825 MiB); SHA-256 333
layers, 1312 wide, 383 M (1.4 GiB); over 98.7 % of the parameters are 0. Building one takes 1-6 s; the networks are
kept sparse and only densified one layer at a time when saved.
"""

from __future__ import annotations

from collections.abc import Callable

from paramlens.errors import ParamLensError
from paramlens.models.compiled.builders import bytes_to_words, rotl, words_to_bytes
from paramlens.models.compiled.emitter import Emitter, Form, Job, Word, combine, constant, parallel
from paramlens.models.compiled.hashes import (
    BIG_ENDIAN,
    MD5_IV,
    MD5_K,
    SHA1_IV,
    SHA1_K,
    SHA256_BIG_SIGMA,
    SHA256_IV,
    SHA256_K,
    SHA256_SMALL_SIGMA,
    check_message,
    md5_index,
    md5_shift,
    padding,
)
from paramlens.models.compiled.sparse_network import SparseNetwork

Recipe = tuple[tuple[tuple[int, ...], int, int], ...]  # per ReLU row: (weights on the inputs, bias, its weight out)
CHOOSE: Recipe = (((1, 1, 0), -1, 1), ((-1, 0, 1), 0, 1))  # x ? y : z
MAJORITY: Recipe = (((1, 1, 1), -1, 1), ((1, 1, 1), -2, -1))
MD5_I: Recipe = (((1, -1, 0), 0, 1), ((-1, -1, -1), 1, 1), ((-1, 1, 1), -1, 1))  # y ^ (x | ~z)
WORD = 32
BLOCKS = (1, 2, 4, 8, 16, 32)


def parity(k: int) -> Recipe:
    """XOR of ``k`` bits from their sum ``s``: ``s - 2 ReLU(s - 1) + 2 ReLU(s - 2) - ...``."""
    return tuple(((1,) * k, -t, 1 if t == 0 else 2 * (-1) ** t) for t in range(k))


# per round: the recipe and which of (b, c, d) feed its inputs
MD5_ROUNDS = ((CHOOSE, (0, 1, 2)), (CHOOSE, (2, 0, 1)), (parity(3), (0, 1, 2)), (MD5_I, (0, 1, 2)))
SHA1_ROUNDS = (CHOOSE, parity(3), MAJORITY, parity(3))


def bitwise(e: Emitter, recipe: Recipe, *words: Word) -> Word:
    """One layer: per bit position, the recipe's ReLU rows over the words' bits."""
    return [combine((c, e.row(combine(zip(w, bits)), b)) for w, b, c in recipe) for bits in zip(*words)]


def threshold_steps(e: Emitter, value: Form, spacing: int, count: int) -> list[Form]:
    """``step(value >= t * spacing)`` for ``t = 1..count`` (integer ``value``) as ``ReLU(value - t spacing + 1) -
    ReLU(value - t spacing)``; rows with equal biases are shared."""
    rows: dict[int, Form] = {}

    def relu_shifted(bias: int) -> Form:
        if bias not in rows:
            rows[bias] = e.row(value, bias)
        return rows[bias]

    thresholds = [t * spacing for t in range(1, count + 1)]
    return [combine([(1, relu_shifted(1 - t)), (-1, relu_shifted(-t))]) for t in thresholds]


def _block_sum(e: Emitter, columns: list[Form], n: int, carry: Form, carry_max: int) -> tuple[Word, Form, int]:
    """One block of a column sum of ``n`` words: the block's bits, the carry out and its largest value."""
    value, top, bits, found = carry, carry_max, [], []
    for j, column in enumerate(columns):
        value = combine([(1, value), (1 << j, column)])
        top += n << j  # the largest value V_j can take
        found = threshold_steps(e, value, 1 << j, top >> j)
        bits.append(combine((1 if t % 2 else -1, s) for t, s in enumerate(found, 1)))
    return bits, combine((1, s) for s in found[1::2]), top >> len(columns)


def adder(e: Emitter, operands: list[Word], block: int = 8) -> Job:
    """Job over ``32 / block`` layers: ``sum(operands) mod 2^32`` (operands of the newest finished layer)."""
    columns = [combine((1, w[i]) for w in operands) for i in range(WORD)]
    carry, carry_max, bits = constant(0), 0, []
    for start in range(0, WORD, block):
        new, carry, carry_max = _block_sum(e, columns[start:start + block], len(operands), carry, carry_max)
        bits = [e.keep(b) for b in bits] + new
        columns[start + block:] = [e.keep(column) for column in columns[start + block:]]
        yield
    return bits


def byte_bits(e: Emitter, codes: list[Form]) -> Job:
    """Job over 7 layers: the bits of byte codes 0..255, bit ``j`` of byte ``i`` at ``8 i + j``."""
    rest, high = list(codes), [[] for _ in codes]  # high: the bits found so far, highest first
    for t in range(7, 0, -1):
        found = [threshold_steps(e, x, 1 << t, 1)[0] for x in rest]
        kept = [e.keep(x) for x in rest]
        high = [[e.keep(b) for b in bits] + [f] for bits, f in zip(high, found)]
        yield
        rest = [combine([(1, k), (-(1 << t), f)]) for k, f in zip(kept, found)]
    return [bit for h, r in zip(high, rest) for bit in [r, *h[::-1]]]


def _md5_step(e: Emitter, i: int, block: int) -> Job:
    """Job: MD5 step ``i`` on the live state ``a, b, c, d`` and message words ``w0..w15``."""
    recipe, order = MD5_ROUNDS[i // 16]
    a, bcd = e.live.pop("a"), [e.live[k] for k in "bcd"]
    f = bitwise(e, recipe, *(bcd[k] for k in order))
    operands = [e.pin_word(a), f, e.const_word(MD5_K[i]), e.pin_word(e.live[f"w{md5_index(i)}"])]
    yield
    s = yield from adder(e, operands, block)
    b = yield from adder(e, [e.live["b"], rotl(s, md5_shift(i))], block)
    e.live.update(a=e.live["d"], b=b, c=e.live["b"], d=e.live["c"])


def _sha1_step(e: Emitter, t: int, w: Word, block: int) -> Job:
    """Job: SHA-1 step ``t`` on the live state ``a..e`` with schedule word ``w``."""
    (a, b, c, d), x = (e.live[k] for k in "abcd"), e.live.pop("e")
    f = bitwise(e, SHA1_ROUNDS[t // 20], b, c, d)
    operands = [rotl(e.pin_word(a), 5), f, e.pin_word(x), e.const_word(SHA1_K[t // 20]), e.pin_word(w)]
    yield
    total = yield from adder(e, operands, block)
    e.live.update(a=total, b=e.live["a"], c=rotl(e.live["b"], 30), d=e.live["c"], e=e.live["d"])


def _sha1_schedule(e: Emitter, t: int, w: Word, block: int) -> Job:
    """Job: schedule word ``t + 16`` from the live words and word ``t`` (``w``); one layer, ``block`` unused."""
    word = rotl(bitwise(e, parity(4), *(e.live[f"w{t + k}"] for k in (13, 8, 2)), w), 1)
    yield
    return word


def _sigma(e: Emitter, x: Word, rotations: tuple[int, ...], shift: int | None = None) -> Word:
    """XOR of right rotations of ``x`` (and ``x >> shift``)."""
    words = [rotl(x, -r) for r in rotations]
    if shift is not None:
        words.append(x[shift:] + [constant(0)] * shift)
    return bitwise(e, parity(len(words)), *words)


def _sha256_step(e: Emitter, t: int, w: Word, block: int) -> Job:
    """Job: SHA-256 step ``t`` on the live state ``a..h`` with schedule word ``w``."""
    (a, b, c, x, f, g), d, h = (e.live[k] for k in "abcefg"), e.live.pop("d"), e.live.pop("h")
    t1 = [e.pin_word(h), _sigma(e, x, SHA256_BIG_SIGMA[1]), bitwise(e, CHOOSE, x, f, g), e.const_word(SHA256_K[t]),
          e.pin_word(w)]
    t2 = [_sigma(e, a, SHA256_BIG_SIGMA[0]), bitwise(e, MAJORITY, a, b, c)]
    d = e.pin_word(d)
    yield
    new_e, new_a = yield from parallel(e, adder(e, [d, *t1], block), adder(e, t1 + t2, block))
    old = {k: e.live[k] for k in "abcefg"}
    e.live.update(a=new_a, b=old["a"], c=old["b"], d=old["c"], e=new_e, f=old["e"], g=old["f"], h=old["g"])


def _sha256_schedule(e: Emitter, t: int, w: Word, block: int) -> Job:
    """Job: schedule word ``t + 16`` from the live words and word ``t`` (``w``)."""
    (r0, s0), (r1, s1) = SHA256_SMALL_SIGMA
    operands = [_sigma(e, e.live[f"w{t + 14}"], r1, s1), e.pin_word(e.live[f"w{t + 9}"]),
                _sigma(e, e.live[f"w{t + 1}"], r0, s0), e.pin_word(w)]
    yield
    return (yield from adder(e, operands, block))


def _compress_md5(e: Emitter, steps: int, block: int) -> None:
    for i in range(steps):
        e.run(_md5_step(e, i, block))


def _compress_sha(e: Emitter, steps: int, block: int, step: Callable[[Emitter, int, Word, int], Job],
                  schedule: Callable[[Emitter, int, Word, int], Job]) -> None:
    """Step ``t`` reads schedule word ``t`` and, side by side, computes word ``t + 16`` when a later step reads it."""
    for t in range(steps):
        w = e.live.pop(f"w{t}")
        jobs = [step(e, t, w, block)]
        if t + 16 < steps:
            jobs.append(schedule(e, t, w, block))
        done = e.run(parallel(e, *jobs))
        if t + 16 < steps:
            e.live[f"w{t + 16}"] = done[1]


COMPRESS = {"md5": _compress_md5,
            "sha1": lambda e, steps, block: _compress_sha(e, steps, block, _sha1_step, _sha1_schedule),
            "sha256": lambda e, steps, block: _compress_sha(e, steps, block, _sha256_step, _sha256_schedule)}
IVS = {"md5": MD5_IV, "sha1": SHA1_IV, "sha256": SHA256_IV}


def _readout(e: Emitter, digest: Word, target: bytes | None, compare: str) -> None:
    """The output layer: the digest bits, or (after a layer of differences) one bit: digest == target."""
    if target is None:
        for bit in digest:
            e.row(bit)
        e.finish()
        return
    if len(target) * 8 != len(digest):
        raise ParamLensError(f"the target must be a {len(digest) // 8}-byte digest; got {len(target)} bytes")
    if compare == "byte":
        pairs = [(combine((1 << j, digest[8 * k + j]) for j in range(8)), v) for k, v in enumerate(target)]
    else:
        pairs = [(bit, (target[i // 8] >> (i % 8)) & 1) for i, bit in enumerate(digest)]
    gaps = []
    for value, c in pairs:
        gaps += [e.row(value, -c), e.row(combine([(-1, value)]), c)]
    e.finish()
    e.row(combine((-1, g) for g in gaps), 1)
    e.finish()


def hash_network(name: str, n_bytes: int, steps: int | None = None, target: bytes | None = None, *,
                 compare: str = "byte", block: int = 8) -> SparseNetwork:
    """``name`` ("md5", "sha1", "sha256") of an ``n_bytes`` message after ``steps`` steps (None: all), written by
    hand. ``target``: output 1 iff the digest equals it, compared per digest ``"byte"`` or ``"bit"``;
    ``block``: adder bits per layer (a divisor of 32)."""
    steps = check_message(name, n_bytes, steps)
    if block not in BLOCKS or compare not in ("byte", "bit"):
        raise ParamLensError(f"block must be one of {BLOCKS} and compare 'byte' or 'bit'; got {block}, {compare!r}")
    names, big_endian = "abcdefgh"[:len(IVS[name])], BIG_ENDIAN[name]
    e = Emitter(n_bytes)
    e.live.update({k: e.const_word(v) for k, v in zip(names, IVS[name])})
    bits = e.run(byte_bits(e, e.inputs))
    message = [bits[8 * i:8 * i + 8] for i in range(n_bytes)]
    message += [[constant((v >> j) & 1) for j in range(8)] for v in padding(n_bytes, big_endian)]
    e.live.update({f"w{g}": w for g, w in enumerate(bytes_to_words(message, big_endian))})
    COMPRESS[name](e, steps, block)
    state = [e.pin_word(e.live[k]) for k in names]
    iv = [e.const_word(v) for v in IVS[name]]
    e.live.clear()
    e.finish()
    words = e.run(parallel(e, *(adder(e, [s, v], block) for s, v in zip(state, iv))))
    _readout(e, [bit for byte in words_to_bytes(words, big_endian) for bit in byte], target, compare)
    return SparseNetwork(e.layers)
