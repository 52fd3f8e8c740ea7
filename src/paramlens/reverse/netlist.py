"""Write a :class:`~paramlens.core.circuits.Circuit` as a JSON netlist, Graphviz DOT, or Python source."""

from __future__ import annotations

from typing import Any

from paramlens.core.circuits import Circuit

_PY = {"and": " & ", "or": " | ", "xor": " ^ "}


def _name(c: Circuit, s: int) -> str:
    return f"x{s}" if s < c.n_inputs else f"g{s}"


def to_json(c: Circuit) -> dict[str, Any]:
    """``{"inputs": n, "gates": [{"id", "op", "inputs", ...}], "outputs": [...]}``."""
    gates = []
    for s, g in enumerate(c.gates, start=c.n_inputs):
        row: dict[str, Any] = {"id": s, "op": g.op, "inputs": list(g.inputs)}
        if g.op == "threshold":
            row |= {"weights": list(g.weights), "threshold": g.threshold}
        gates.append(row)
    return {"inputs": c.n_inputs, "gates": gates, "outputs": list(c.outputs)}


def from_json(data: dict[str, Any]) -> Circuit:
    c = Circuit(int(data["inputs"]))
    for g in data["gates"]:
        w = tuple(g["weights"]) if "weights" in g else None
        c.add(g["op"], *g["inputs"], weights=w, threshold=g.get("threshold"))
    c.outputs = list(data["outputs"])
    return c


def to_dot(c: Circuit) -> str:
    """A Graphviz digraph: inputs as boxes, gates as ellipses labelled with their op, outputs as double circles."""
    lines = ["digraph circuit {", "  rankdir=LR;"]
    lines += [f'  {_name(c, i)} [shape=box,label="x{i}"];' for i in range(c.n_inputs)]
    for s, g in enumerate(c.gates, start=c.n_inputs):
        label = g.op if g.op != "threshold" else f"{list(g.weights)} >= {g.threshold}"
        shape = "doublecircle" if s in c.outputs else "ellipse"
        lines.append(f'  {_name(c, s)} [shape={shape},label="{label}"];')
        lines += [f"  {_name(c, i)} -> {_name(c, s)};" for i in g.inputs]
    lines.append("}")
    return "\n".join(lines)


def _expr(c: Circuit, s: int) -> str:
    g = c.gates[s - c.n_inputs]
    ins = [_name(c, i) for i in g.inputs]
    if g.op in _PY:
        return _PY[g.op].join(ins)
    if g.op in ("nand", "nor", "xnor"):
        return f"1 ^ ({_PY[g.op[1:] if g.op != 'xnor' else 'xor'].join(ins)})"
    if g.op == "not":
        return f"1 ^ {ins[0]}"
    if g.op in ("copy", "buf"):
        return ins[0]
    if g.op == "maj":
        return f"int({' + '.join(ins)} >= 2)"
    if g.op in ("const0", "const1"):
        return g.op[-1]
    terms = " + ".join(f"{w} * {i}" for w, i in zip(g.weights, ins)) or "0"
    return f"int({terms} >= {g.threshold})"


def to_python(c: Circuit, name: str = "circuit") -> str:
    """Source of ``def name(x) -> tuple``: ``x`` a sequence of 0/1 ints, one line per gate."""
    lines = [f"def {name}(x):", f'    """{c.n_inputs} input bits -> {len(c.outputs)} output bits."""']
    lines += [f"    x{i} = x[{i}]" for i in range(c.n_inputs)]
    lines += [f"    g{s} = {_expr(c, s)}" for s in range(c.n_inputs, c.n_signals)]
    lines.append(f"    return ({', '.join(_name(c, o) for o in c.outputs)},)")
    return "\n".join(lines) + "\n"
