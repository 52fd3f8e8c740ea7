import pytest
import torch
from typer.testing import CliRunner

from paramlens.cli import app
from paramlens.errors import ParamLensError
from paramlens.models.shuffled import PiecesConfig, make_shuffled
from paramlens.reverse.block_order import Blocks, moves, order_blocks, predicted_changes
from paramlens.reverse.reassemble import Piece, Reassembly, load_pieces, pair_pieces, reassemble

SMALL = PiecesConfig(n_blocks=8, d_model=8, d_hidden=16, n_rows=1000, n_steps=400, seed=0)


@pytest.fixture(scope="module")
def shuffled():
    return make_shuffled(SMALL)


def true_blocks(shuffled) -> Blocks:
    """The blocks in their true order (block k = position k), from the ground truth."""
    ids = [(shuffled.order[2 * k], shuffled.order[2 * k + 1]) for k in range(SMALL.n_blocks)]
    p = shuffled.pieces
    return Blocks(*(torch.stack([p[pair[side]][j] for pair in ids]) for side, j in [(0, 0), (0, 1), (1, 0), (1, 1)]),
                  p[shuffled.order[-1]][0], p[shuffled.order[-1]][1]).to(torch.float64)


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


def test_the_true_order_is_recovered_from_data_given_the_pairs(shuffled):
    blocks = true_blocks(shuffled)
    shuffle = torch.randperm(SMALL.n_blocks, generator=torch.Generator().manual_seed(1))
    scrambled = Blocks(blocks.expand[shuffle], blocks.expand_bias[shuffle], blocks.contract[shuffle],
                       blocks.contract_bias[shuffle], blocks.readout, blocks.readout_bias)
    found = order_blocks(scrambled, shuffled.x, shuffled.y)
    assert shuffle[found.order].tolist() == list(range(SMALL.n_blocks))
    assert found.exact and found.mse < 1e-10 and found.work.candidates_scored > 0


def test_a_wrong_order_is_reported_as_not_exact(shuffled):
    blocks = true_blocks(shuffled)
    found = order_blocks(blocks, shuffled.x, shuffled.y, max_rounds=0)  # seeds only, no search
    assert found.order != list(range(SMALL.n_blocks)) and not found.exact and found.mse > 1e-6


def test_first_order_scores_of_moves_match_running_them(shuffled):
    """The batched first-order model of a move's effect on the output agrees with running the moved network."""
    blocks = true_blocks(shuffled)
    order = list(range(SMALL.n_blocks))
    x = shuffled.x[:200].double()
    h = blocks.streams(order, x)
    g = blocks.output_jacobians(order, h)
    cands = moves(order, reach=3)
    predicted = predicted_changes(blocks, cands, h, g, chunk=7)
    base = blocks.output(h[-1])
    exact = torch.stack([(blocks.output(blocks.streams(m.apply(order), x)[-1]) - base).flatten() for m in cands])
    rel = (predicted - exact).norm(dim=1) / exact.norm(dim=1)
    assert rel.median() < 0.1
    assert len(cands) == len({m.apply(order).__repr__() for m in cands})  # no move listed twice


def test_cli_prints_a_permutation_of_the_pieces_and_a_report(shuffled, tmp_path):
    folder = shuffled.save(tmp_path / "pieces")
    res = CliRunner().invoke(app, ["reverse", "reassemble", str(folder), "--data", str(folder / "data.csv"),
                                   "--out", str(tmp_path / "runs")])
    result = Reassembly.load(next((tmp_path / "runs").iterdir()))
    assert sorted(result.order) == list(range(len(shuffled.pieces))) and result.order[-1] == shuffled.order[-1]
    assert " ".join(map(str, result.order)) in " ".join(res.output.split())
    assert res.exit_code == (0 if result.exact else 4)  # 4: ran, no exact order found
    assert (next((tmp_path / "runs").iterdir()) / "index.html").is_file()


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

    from paramlens.reverse.reassemble import load_rows

    (tmp_path / "d.csv").write_text("x0,x1,y\n1,2,3\n\n4,5,6\n\n\n")
    x, y = load_rows(tmp_path / "d.csv", 2, 1)
    assert x.tolist() == [[1.0, 2.0], [4.0, 5.0]] and y.tolist() == [[3.0], [6.0]]
    os.mkfifo(tmp_path / "pipe.csv")
    with pytest.raises(ParamLensError, match="not a regular file"):
        load_rows(tmp_path / "pipe.csv", 2, 1)
