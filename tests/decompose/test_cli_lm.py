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
    assert result.config["layerwise_recon_coeff"] == 0  # language models: no layerwise passes unless asked


def test_language_model_defaults_fit_each_method_and_yield_to_the_command_line(cli, tmp_path, lm_folder):
    args = ("decompose", lm_folder, "-t", "model.layers.0.mlp.*", "--steps", 2, "--batch-size", 2, "--context", 16,
            "--C", 2, "--tokens", 1024)
    for method, extra, layerwise in (("apd", (), None), ("spd", (), 0), ("spd", ("--set", "layerwise_recon_coeff=1"), 1)):
        out_dir = tmp_path / f"{method}{len(extra)}"
        code, _, err = cli(*args, "--method", method, *extra, "--out", out_dir)
        assert code == 0, err
        (folder,) = out_dir.iterdir()
        config = Decomposition.load(folder).config
        assert config["output_loss"] == "kl" and config.get("layerwise_recon_coeff") == layerwise
