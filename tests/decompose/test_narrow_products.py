"""The compile pass that computes narrow matrix products transposed: same values and gradients as eager, and only
narrow float32 CPU products rewritten (counted)."""

import pytest
import torch
import torch.nn.functional as F
from torch._dynamo.utils import counters

from paramlens.decompose.narrow_products import NarrowProducts


def rewrites(fn, *args):
    """``(outputs, gradients of the inputs, number of products rewritten)`` of ``fn`` compiled with the pass."""
    torch._dynamo.reset()
    before = counters["inductor"]["narrow_products"]
    args = [a.detach().requires_grad_() for a in args]
    out = torch.compile(fn, dynamic=False, options={"post_grad_custom_post_pass": NarrowProducts()})(*args)
    grads = torch.autograd.grad(out.square().sum(), args)
    return out, grads, counters["inductor"]["narrow_products"] - before


def eager(fn, *args):
    args = [a.detach().requires_grad_() for a in args]
    out = fn(*args)
    return out, torch.autograd.grad(out.square().sum(), args)


@pytest.mark.parametrize("fn, shapes, expected", [
    (torch.mm, [(256, 20), (20, 2)], 2),  # forward (256, 2) and the gradient of B (20, 2); A's (256, 20) is wide
    (lambda x, w, b: F.linear(x, w, b), [(256, 20), (5, 20), (5,)], 1),  # addmm with a bias; its gradients are wide
    (torch.mm, [(64, 64), (64, 64)], 0),
    (torch.mm, [(256, 20), (20, 1)], 0),  # one column: a matrix-vector product, fast as it is
    (torch.mm, [(8, 4), (4, 4)], 0),  # too few rows
], ids=["narrow", "linear", "wide", "one-column", "few-rows"])
def test_narrow_products_are_rewritten_and_equal_eager(fn, shapes, expected):
    gen = torch.Generator().manual_seed(0)
    args = [torch.randn(s, generator=gen) for s in shapes]
    out, grads, n = rewrites(fn, *args)
    ref_out, ref_grads = eager(fn, *args)
    assert n == expected
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-4)


def test_other_dtypes_are_left_alone():
    a, b = torch.randn(256, 20, dtype=torch.float64), torch.randn(20, 2, dtype=torch.float64)
    assert rewrites(torch.mm, a, b)[2] == 0
