from collections import OrderedDict

import pytest
import torch
from typer.testing import CliRunner

from paramlens.cli import app
from paramlens.errors import ParamLensError
from paramlens.models.shuffled import PiecesConfig, make_shuffled
from paramlens.reverse.block_order import order_blocks
from paramlens.reverse.pieces import Piece, load_pieces, load_rows
from paramlens.reverse.precedence import pair_effects, precedence_orders
from paramlens.reverse.reassemble import Reassembly, pair_pieces, reassemble
from paramlens.reverse.residual_blocks import Blocks
from paramlens.terminal import Exit

# Trained briefly, few blocks pair unambiguously by |trace(C E)| only at this width (this seed: margin 7%).
SMALL = PiecesConfig(n_blocks=8, d_model=48, d_hidden=96, n_rows=1000, n_steps=300, seed=1)
REVERSED = list(range(SMALL.n_blocks))[::-1]


@pytest.fixture(scope="module")
def shuffled():
    return make_shuffled(SMALL)


@pytest.fixture(scope="module")
def folder(shuffled, tmp_path_factory):
    """The pieces as ``piece_<i>.safetensors`` and ``data.csv`` (inputs, ``pred``, label ``true``)."""
    return shuffled.save(tmp_path_factory.mktemp("pieces"), output="pred", label="true")


def true_blocks(shuffled) -> Blocks:
    """The blocks in their true order (block k = position k), from the ground truth."""
    ids = [(shuffled.order[2 * k], shuffled.order[2 * k + 1]) for k in range(SMALL.n_blocks)]
    p = shuffled.pieces
    return Blocks(*(torch.stack([p[pair[side]][j] for pair in ids]) for side, j in [(0, 0), (0, 1), (1, 0), (1, 1)]),
                  p[shuffled.order[-1]][0], p[shuffled.order[-1]][1]).to(torch.float64)


def write_csv(path, columns: dict[str, list]) -> None:
    rows = zip(*columns.values())
    path.write_text(",".join(columns) + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")


def data_columns(shuffled) -> dict[str, list]:
    cols = {f"x{j}": shuffled.x[:, j].tolist() for j in range(SMALL.d_model)}
    return {**cols, "pred": shuffled.y[:, 0].tolist(), "true": shuffled.label[:, 0].tolist()}


def test_pairing_finds_planted_pairs_with_signed_self_interaction():
    """Blocks whose C is close to -a E^T (the signature training leaves) are paired by |trace(C E)| alone."""
    g = torch.Generator().manual_seed(0)
    n, d, h = 12, 16, 32
    expand = [torch.randn(h, d, generator=g) / d**0.5 for _ in range(n)]
    contract = [-0.3 * e.T + torch.randn(d, h, generator=g) / h**0.5 for e in expand]
    shuffle = torch.randperm(n, generator=g).tolist()
    pieces = [Piece(f"e{i}", e, torch.zeros(h)) for i, e in enumerate(expand)]
    pieces += [Piece(f"c{i}", contract[shuffle[i]], torch.zeros(d)) for i in range(n)]
    pieces.append(Piece("readout", torch.randn(1, d, generator=g), torch.zeros(1)))
    pairing = pair_pieces(pieces)
    assert sorted(pairing.blocks) == sorted((shuffle[i], n + i) for i in range(n))
    assert pairing.final == 2 * n and pairing.margin > 0.01


def test_the_true_order_is_found_from_the_reversed_order(shuffled):
    found = order_blocks(true_blocks(shuffled), shuffled.x, shuffled.y, seeds={"reversed": REVERSED})
    assert found.order == list(range(SMALL.n_blocks)) and found.exact and found.mse < 1e-10 and found.steps > 0


def test_a_wrong_order_is_reported_as_not_exact(shuffled):
    found = order_blocks(true_blocks(shuffled), shuffled.x, shuffled.y, seeds={"reversed": REVERSED}, max_steps=0)
    assert found.order == REVERSED and not found.exact and found.mse > 1e-6 and found.steps == 0


def test_pair_effects_predict_swaps_and_the_true_order_is_a_fixed_point(shuffled):
    """Swapping neighbours i, j (i first) changes the output by about c[j, i] - c[i, j] (first order: close in
    direction and size); at the true order every step proposes the true order again."""
    blocks, order = true_blocks(shuffled), list(range(SMALL.n_blocks))
    x, y = shuffled.x[:300].double(), shuffled.y[:300].double()
    c, out = pair_effects(blocks, order, x)
    for k in range(SMALL.n_blocks - 1):
        swapped = order[:k] + [order[k + 1], order[k]] + order[k + 2:]
        exact = blocks.output(blocks.streams(swapped, x)[-1]).flatten() - out
        predicted = c[k + 1, k] - c[k, k + 1]
        assert torch.cosine_similarity(predicted, exact, dim=0) > 0.8
        assert 0.7 < predicted.norm() / exact.norm() < 1.4
    assert all(o == order for o in precedence_orders(blocks, order, x, y))


@pytest.mark.parametrize("fmt", ["pth", "npz"])
def test_pieces_in_other_formats_reassemble_exactly(shuffled, tmp_path, fmt):
    folder = shuffled.save(tmp_path / "pieces", fmt=fmt)
    (folder / "README.txt").write_text("pieces of a network\n")
    result = reassemble(folder, folder / "data.csv", progress=False)
    assert result.exact and result.order == shuffled.order
    assert result.pieces[0] == f"piece_0.{fmt}" and result.skipped == ["README.txt", "data.csv"]


def test_legacy_torch_files_and_files_without_a_suffix_are_pieces(shuffled, tmp_path):
    for i, (w, b) in enumerate(shuffled.pieces):
        name = f"piece_{i}" if i % 2 else f"piece_{i}.pt"  # recognised by content / by suffix
        torch.save(OrderedDict(weight=w, bias=b), tmp_path / name, _use_new_zipfile_serialization=False)
    pieces, skipped = load_pieces(tmp_path)
    assert len(pieces) == len(shuffled.pieces) and not skipped
    assert all(torch.equal(p.weight, w.double()) for p, (w, _) in zip(pieces, shuffled.pieces))


def test_a_weights_file_that_is_not_a_piece_is_one_line(tmp_path):
    torch.save({"x": torch.ones(3, 2), "y": torch.ones(3, 1)}, tmp_path / "piece_0.pt")
    with pytest.raises(ParamLensError, match=r"piece_0\.pt: not a piece; a piece holds one weight") as e:
        load_pieces(tmp_path)
    assert "\n" not in str(e.value)
    (tmp_path / "piece_0.pt").unlink()
    (tmp_path / "notes.txt").write_text("nothing here\n")
    with pytest.raises(ParamLensError, match=r"no piece files .*; found only notes\.txt"):
        load_pieces(tmp_path)


def test_the_target_is_pred_by_default_and_the_label_is_not_used(shuffled, folder, tmp_path):
    columns = data_columns(shuffled)
    pred = columns.pop("pred")
    columns["true"] = ["n/a"] * len(shuffled.x)  # never read: a column that is not a number is no error
    index = {"": list(range(len(shuffled.x)))}  # an unnamed first column, as pandas writes its index
    write_csv(tmp_path / "rows.csv", {**index, **columns, "pred": pred})
    result = reassemble(folder, tmp_path / "rows.csv", progress=False)
    assert result.exact and result.order == shuffled.order
    assert (result.targets, result.targets_chosen) == (["pred"], "default")
    assert result.unused_columns == ["(column 1, unnamed)", "true"]
    assert result.inputs == [f"x{j}" for j in range(SMALL.d_model)]
    assert "data: target 'pred' (default); inputs x0..x47; not used: (column 1, unnamed), true" in result.summary()


def test_a_named_target_column_is_used(shuffled, folder, tmp_path):
    columns = data_columns(shuffled)
    pred = columns.pop("pred")
    write_csv(tmp_path / "rows.csv", {**columns, "out": pred})
    _, y, cols = load_rows(tmp_path / "rows.csv", SMALL.d_model, 1, ["out"])
    assert torch.equal(y, shuffled.y.double()) and cols.unused == ["true"] and cols.chosen == "named"
    with pytest.raises(ParamLensError, match=r"no column 'pred'; columns: x0\.\.x47, true, out"):
        load_rows(tmp_path / "rows.csv", SMALL.d_model, 1, ["pred"])
    with pytest.raises(ParamLensError, match="the readout has 1 output"):
        load_rows(tmp_path / "rows.csv", SMALL.d_model, 1, ["out", "true"])


def test_without_pred_an_ambiguous_csv_is_refused_listing_its_columns(shuffled, folder, tmp_path, cli):
    columns = data_columns(shuffled)
    pred = columns.pop("pred")
    write_csv(tmp_path / "rows.csv", {**columns, "out": pred})
    code, _, err = cli("reverse", "reassemble", folder, "--data", tmp_path / "rows.csv", "--out", tmp_path / "runs")
    assert code == Exit.BAD_INPUT and len(err.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()
    assert "no single 'pred' column" in err and "--target-column (columns: x0..x47, true, out)" in err


def test_cli_reassembles_with_a_target_column_and_writes_a_report(shuffled, folder, tmp_path):
    res = CliRunner().invoke(app, ["reverse", "reassemble", str(folder), "--data", str(folder / "data.csv"),
                                   "--target-column", "pred", "--out", str(tmp_path / "runs")])
    run = next((tmp_path / "runs").iterdir())
    result = Reassembly.load(run)
    assert res.exit_code == 0 and result.exact and result.order == shuffled.order
    assert " ".join(map(str, result.order)) in " ".join(res.output.split())
    assert "target 'pred' (named)" in res.output and (run / "index.html").is_file()


def test_a_label_as_target_is_not_exact_and_says_which_column_was_used(folder, tmp_path):
    res = CliRunner().invoke(app, ["reverse", "reassemble", str(folder), "--data", str(folder / "data.csv"),
                                   "--target-column", "true", "--out", str(tmp_path / "runs")])
    assert res.exit_code == Exit.NOT_FOUND and "NOT exact" in res.output and "target 'true' (named)" in res.output


def test_malformed_inputs_are_clear_errors(shuffled, tmp_path):
    with pytest.raises(ParamLensError, match="not a folder"):
        load_pieces(tmp_path / "missing")
    folder = shuffled.save(tmp_path / "pieces")
    (folder / "data.csv").write_text("x0,x1\n1,2\n")
    with pytest.raises(ParamLensError, match="columns"):
        reassemble(folder, folder / "data.csv", progress=False)
    (folder / "piece_0.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(ParamLensError, match="piece_0"):
        load_pieces(folder)


def test_blank_lines_are_not_rows_and_a_pipe_is_not_a_data_file(tmp_path):
    import os

    (tmp_path / "d.csv").write_text("x0,x1,y\n1,2,3\n\n4,5,6\n\n\n")
    x, y, cols = load_rows(tmp_path / "d.csv", 2, 1)
    assert x.tolist() == [[1.0, 2.0], [4.0, 5.0]] and y.tolist() == [[3.0], [6.0]] and cols.chosen == "by position"
    os.mkfifo(tmp_path / "pipe.csv")
    with pytest.raises(ParamLensError, match="not a regular file"):
        load_rows(tmp_path / "pipe.csv", 2, 1)
