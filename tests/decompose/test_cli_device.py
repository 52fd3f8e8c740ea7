"""paramlens decompose --device: where the run trains; a device this machine lacks is one line, before any work."""

import pytest
import torch

from paramlens.decompose import Decomposition
from paramlens.decompose.cli_run import training_device
from paramlens.errors import ParamLensError


def test_auto_is_the_cpu_without_a_gpu_and_cpu_is_the_cpu():
    if not torch.cuda.is_available():
        assert training_device("auto") == torch.device("cpu")
    assert training_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize(("name", "says"), [("tpu9", "not a device"), ("meta", "trains on cpu or cuda"),
                                            ("cuda:99", "CUDA device")])
def test_a_device_it_cannot_train_on_is_refused(name, says):
    with pytest.raises(ParamLensError, match=says):
        training_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU")
def test_a_gpu_asked_for_on_a_machine_without_one_is_one_line_and_writes_nothing(cli, tmp_path):
    code, out, err = cli("decompose", "tms", "-t", "linear1", "--steps", 2, "--device", "cuda", "--out", tmp_path)
    assert code != 0 and "torch sees no CUDA device" in err and "Traceback" not in err + out
    assert not any(tmp_path.iterdir())


def test_cpu_named_explicitly_trains_the_same_run_as_auto_on_this_machine(cli, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("auto would take the GPU")
    args = ("decompose", "tms", "-t", "linear1", "-t", "linear2", "--steps", 5, "--batch-size", 32, "--C", 3)
    results = []
    for device in ("cpu", "auto"):
        code, _, err = cli(*args, "--device", device, "--out", tmp_path / device)
        assert code == 0, err
        (folder,) = (tmp_path / device).iterdir()
        results.append(Decomposition.load(folder))
    assert results[0].params.keys() == results[1].params.keys()
    assert all(torch.equal(results[0].params[k], results[1].params[k]) for k in results[0].params)


def test_the_memory_estimate_counts_only_the_passes_and_units_the_settings_use(lm_folder):
    from paramlens.core.data import TokenRows
    from paramlens.core.resolve import resolve
    from paramlens.core.text import TextOptions, lm_windows
    from paramlens.core.weights import select
    from paramlens.decompose.cli_run import step_bytes
    from paramlens.decompose.spd import SPDConfig

    loaded = resolve(str(lm_folder), seed=0)
    model = loaded.runnable("decompose")
    data = TokenRows(lm_windows(loaded, TextOptions(corpus="fortunes", tokens=512, context=16)))
    targets = select(model, ["model.layers.*.mlp.*_proj"])
    paper = step_bytes(model, data, targets, SPDConfig(C=8, batch_size=4))
    no_layerwise = step_bytes(model, data, targets, SPDConfig(C=8, batch_size=4, layerwise_recon_coeff=0))
    per_target = step_bytes(model, data, targets, SPDConfig(C=8, batch_size=4, ci_fn="mlp_per_target",
                                                            ci_fn_hidden=8))
    vocab, d = model.get_input_embeddings().weight.shape
    tokens = 4 * 16
    assert paper - no_layerwise == tokens * 4 * len(targets) * (3 * vocab + 20 * d * 2)  # one pass per target
    assert per_target < paper  # 8 hidden units per target and token, not 16 per subcomponent
