"""Subcomponents, gates and sigmoids against naive reference computations."""

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paramlens.core.weights import run_with, select
from paramlens.decompose import gate_kernel, native
from paramlens.decompose.components import Gates, Subcomponents, lower_leaky_hard_sigmoid, upper_leaky_hard_sigmoid
from paramlens.decompose.forward import faithfulness, run_maps
from paramlens.decompose.spd import SPDModel


def test_batched_gates_equal_one_mlp_per_subcomponent():
    torch.manual_seed(0)
    gates = Gates(C=7, hidden=5)
    inner = torch.randn(11, 7)
    expected = torch.stack([
        F.gelu(inner[:, c : c + 1] * gates.w1[c] + gates.b1[c]) @ gates.w2[c] + gates.b2[c] for c in range(7)
    ], dim=1)
    assert torch.allclose(gates(inner), expected, atol=1e-6)


def _gates_and_reference(C: int, hidden: int, shape: tuple[int, ...], seed: int = 0):
    """Gates with nonzero biases, an input ``shape + (C,)`` and an output gradient, and the reference: one
    ``1 -> hidden -> 1`` MLP per subcomponent in float64, its outputs and the gradients of input and parameters."""
    torch.manual_seed(seed)
    gates = Gates(C=C, hidden=hidden)
    with torch.no_grad():
        gates.b1.normal_(0, 0.5)
        gates.b2.normal_(0, 0.5)
    inner, grad = torch.randn(*shape, C) * 2, torch.randn(*shape, C)
    params = [p.detach().double().requires_grad_() for p in (gates.w1, gates.b1, gates.w2, gates.b2)]
    x = inner.double().requires_grad_()
    w1, b1, w2, b2 = params
    out = torch.stack([F.gelu(x[..., c : c + 1] * w1[c] + b1[c]) @ w2[c] + b2[c] for c in range(C)], dim=-1)
    out.backward(grad.double())
    return gates, inner, grad, out.detach(), [x.grad, *(p.grad for p in params)]


def _outputs_and_grads(gates: Gates, inner: Tensor, grad: Tensor) -> tuple[Tensor, list[Tensor]]:
    x = inner.clone().requires_grad_()
    out = gates(x)
    out.backward(grad)
    return out.detach(), [x.grad, gates.w1.grad, gates.b1.grad, gates.w2.grad, gates.b2.grad]


needs_kernel = pytest.mark.skipif(not gate_kernel.available(),
                                  reason="no fused gate kernel (no C compiler, or PARAMLENS_NATIVE=0)")


@needs_kernel
@pytest.mark.parametrize(("C", "hidden", "shape"), [(7, 5, (11,)), (20, 16, (300,)), (3, 16, (5, 9))])
def test_fused_gates_equal_one_mlp_per_subcomponent_with_gradients(C, hidden, shape):
    """The compiled kernel (float32, CPU): outputs and gradients of input and all parameters, for inputs
    ``(B, C)`` and ``(B, T, C)`` and batches that do not fill its blocks of rows."""
    gates, inner, grad, expected, expected_grads = _gates_and_reference(C, hidden, shape)
    assert gate_kernel.usable(inner, gates.w1)
    out, grads = _outputs_and_grads(gates, inner, grad)
    assert out.shape == inner.shape
    assert torch.allclose(out.double(), expected, atol=1e-5)
    for got, want in zip(grads, expected_grads):
        assert got.shape == want.shape
        assert torch.allclose(got.double(), want, atol=1e-5, rtol=1e-5)


def test_einsum_gates_equal_one_mlp_per_subcomponent_with_gradients():
    """The plain-torch path (here float64, which the kernel does not take), and its gradients by gradcheck."""
    gates, inner, grad, expected, expected_grads = _gates_and_reference(4, 3, (2, 5))
    gates.double()
    assert not gate_kernel.usable(inner.double(), gates.w1)
    out, grads = _outputs_and_grads(gates, inner.double(), grad.double())
    assert torch.allclose(out, expected, atol=1e-10)
    for got, want in zip(grads, expected_grads):
        assert torch.allclose(got, want, atol=1e-10)
    names = [n for n, _ in gates.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in gates.parameters()]
    call = lambda x, *p: torch.func.functional_call(gates, dict(zip(names, p)), (x,))
    assert torch.autograd.gradcheck(call, (inner.double().requires_grad_(), *params))


@needs_kernel
def test_fused_gates_without_input_gradient_and_without_grad():
    gates, inner, grad, expected, expected_grads = _gates_and_reference(5, 4, (6,))
    out = gates(inner)  # the input needs no gradient: the kernel skips d out / d input
    out.backward(grad)
    for got, want in zip([gates.w1.grad, gates.b1.grad, gates.w2.grad, gates.b2.grad], expected_grads[1:]):
        assert torch.allclose(got.double(), want, atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(gates(inner).double(), expected, atol=1e-5)


@needs_kernel
def test_fused_gate_kernel_is_deterministic_across_threads():
    gates, inner, grad, _, _ = _gates_and_reference(9, 16, (700,))
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 3):
            torch.set_num_threads(n)
            gates.zero_grad()
            results.append(_outputs_and_grads(gates, inner, grad))
    finally:
        torch.set_num_threads(threads)
    (out1, grads1), (out3, grads3) = results
    assert torch.equal(out1, out3) and all(torch.equal(a, b) for a, b in zip(grads1, grads3))


@needs_kernel
def test_fused_gate_kernel_built_for_any_cpu_agrees():
    """The kernel built for this CPU (16-lane intrinsics where it has AVX-512) and built for any CPU of its kind (no
    ``-march``: the compiler's own loops) give the same outputs, derivatives and sums up to float rounding."""
    gen = torch.Generator().manual_seed(0)
    (N, C), H = (300, 7), 16
    a, g = torch.randn(N, C, generator=gen) * 2, torch.randn(N, C, generator=gen)
    w1, b1, w2 = (torch.randn(C, H, generator=gen) for _ in range(3))
    b2 = torch.randn(C, generator=gen)
    results = []
    for lib in (gate_kernel._library(), native.build("gates", gate_kernel._SOURCE, gate_kernel.SIGNATURES, native.compiler(), [])):
        out, sums = torch.empty(2, N, C), torch.empty(3, C, H)
        lib.gates_forward(*(t.data_ptr() for t in (a, w1, b1, w2, b2, out[0], out[1])), N, C, H, 1)
        lib.gates_backward(*(t.data_ptr() for t in (a, g, w1, b1, *sums)), N, C, H, 1)
        results.append((out, sums))
    (out, sums), (plain_out, plain_sums) = results
    assert torch.allclose(out, plain_out, atol=1e-5, rtol=1e-6)
    assert torch.allclose(sums, plain_sums, atol=1e-4, rtol=1e-5)


@needs_kernel
def test_fused_gate_ops_pass_opcheck():
    """Schema, fake (meta) implementations and autograd registration, as torch.compile needs them."""
    torch.manual_seed(0)
    a, g = torch.randn(10, 3, requires_grad=True), torch.randn(10, 3)
    w1, b1, w2 = (torch.randn(3, 4, requires_grad=True) for _ in range(3))
    b2 = torch.randn(3, requires_grad=True)
    torch.library.opcheck(gate_kernel.gates_forward, (a, w1, b1, w2, b2, True))
    torch.library.opcheck(gate_kernel.gates_backward, (a.detach(), g, w1.detach(), b1.detach()))


def test_masked_components_equal_per_example_weights():
    """((x V) * m) U + b is the layer run with its own weight sum_c m_c U_c V_c^T, example by example."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
    target = select(model, "0")[0]
    comp = Subcomponents(target, C=9)
    x, mask = torch.randn(5, 6), torch.rand(5, 9)
    per_example = torch.einsum("bc,co,ic->boi", mask, comp.U, comp.V)  # (batch, d_out, d_in)
    expected = run_with(model, {target: per_example}, x, batched=True)
    assert torch.allclose(run_maps(model, {target: comp.masked(mask)}, x), expected, atol=1e-5)
    assert torch.allclose(run_maps(model, {target: comp.masked(None)}, x), run_with(model, {target: comp.weight()}, x),
                          atol=1e-5)
    assert torch.allclose(comp.matrices().sum(0), comp.weight(), atol=1e-6)


def test_embedding_and_conv1d_components():
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(2)
    model = nn.Sequential(nn.Embedding(10, 4), Conv1D(3, 4))
    tokens = torch.randint(0, 10, (2, 5))
    for target in select(model, "*"):
        comp = Subcomponents(target, C=6)
        assert torch.allclose(run_maps(model, {target: comp.masked(None)}, tokens),
                              run_with(model, {target: comp.weight()}, tokens), atol=1e-5)


def test_leaky_hard_sigmoids():
    x = torch.tensor([-2.0, 0.0, 0.5, 1.0, 3.0])
    assert torch.allclose(lower_leaky_hard_sigmoid(x), torch.tensor([-0.02, 0.0, 0.5, 1.0, 1.0]))
    assert torch.allclose(upper_leaky_hard_sigmoid(x), torch.tensor([0.0, 0.0, 0.5, 1.0, 1.02]))


def test_tied_targets_share_the_owner_subcomponents_transposed():
    from paramlens import ParamLensError
    from paramlens.decompose.spd import SPDModel
    from paramlens.models.toy.tms import TMS, TMSConfig

    torch.manual_seed(3)
    model = TMS(TMSConfig(n_features=6, n_hidden=3))
    targets = select(model, ["linear1", "linear2"])
    spd = SPDModel(targets, C=8, tied=model.tied_targets)
    spd.init_from(model)
    one, two = (spd.component(t) for t in targets)
    assert torch.equal(two.weight(), one.weight().T)
    assert sorted(spd.state_dict()) == sorted(k for k in spd.state_dict() if "linear2" not in k or "gates" in k)
    assert sum(p.numel() for p in spd.parameters()) == 8 * (6 + 3) + 2 * (3 * 8 * 16 + 8)
    x = torch.rand(4, 6)
    assert torch.allclose(run_maps(model, {targets[1]: two.masked(None)}, x),
                          run_with(model, {targets[1]: one.weight().T}, x), atol=1e-6)
    with torch.no_grad():
        model.linear2.weight.add_(0.1)
    with pytest.raises(ParamLensError, match="'linear2' is not the transpose of 'linear1'"):
        spd.init_from(model)
    with pytest.raises(ParamLensError, match="both must be targets"):
        SPDModel(targets[:1], C=8, tied=model.tied_targets)


def test_faithfulness_warmup_fits_the_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
    targets = select(model, ["0", "2"])
    spd = SPDModel(targets, C=8)
    spd.init_from(model)

    def loss() -> float:
        return float(faithfulness(model, spd.owners, lambda t: spd.component(t).weight()).detach())

    before = loss()
    spd.warm_up(model, steps=300, lr=1e-2, weight_decay=0.0)
    assert loss() < 1e-3 * before


def test_apd_tied_targets_use_the_owner_components_transposed():
    from paramlens import ParamLensError
    from paramlens.decompose.apd import APDConfig, APDMethod
    from paramlens.models.toy.tms import TMS, TMSConfig

    torch.manual_seed(3)
    model = TMS(TMSConfig(n_features=6, n_hidden=3))
    targets = select(model, ["linear1", "linear2"])
    dec = APDMethod.build(model, targets, APDConfig(C=4, rank=2, tied=model.tied_targets))
    assert sorted(dec.state_dict()) == ["A.linear1", "B.linear1", "threshold"]  # linear2 owns nothing
    assert torch.allclose(dec.weight(targets[1]), dec.weight(targets[0]).T)
    x = torch.rand(5, 3)
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0])
    parts = dec.factors(targets[0])
    kept = sum(parts[0][c] @ parts[1][c] for c in (0, 2))  # (d_in1, d_out1): linear2's kept matrix, transposed
    assert torch.allclose(dec.masked(targets[1], mask)(x), x @ kept.T, atol=1e-6)
    with torch.no_grad():
        model.linear2.weight.add_(0.1)
    with pytest.raises(ParamLensError, match="'linear2' is not the transpose of 'linear1'"):
        APDMethod.build(model, targets, APDConfig(C=4, tied=model.tied_targets))
