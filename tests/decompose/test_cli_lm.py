"""paramlens decompose on a real language model, named the way every other command names it."""

from paramlens.decompose import Decomposition


def test_decompose_reads_the_packaged_smollm2_by_name(cli, tmp_path):
    code, out, err = cli("decompose", "smollm2", "-t", "model.layers.0.mlp.*", "--steps", 2, "--batch-size", 1,
                         "--context", 32, "--C", 2, "--tokens", 2048, "--out", tmp_path)
    assert code == 0, err
    (folder,) = tmp_path.iterdir()
    result = Decomposition.load(folder)
    assert [t["name"] for t in result.targets] == [f"model.layers.0.mlp.{p}" for p in ("gate_proj", "up_proj",
                                                                                      "down_proj")]
    assert result.config["output_loss"] == "kl" and (folder / "run.json").is_file() and "report:" in out
