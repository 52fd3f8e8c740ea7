"""Mask noise: uniform on [0, 1), decided by the generator's state, and torch.rand where the native code is off."""

import math

import pytest
import torch

from paramlens.decompose import noise


def test_noise_is_uniform_and_reproducible():
    gen = torch.Generator().manual_seed(0)
    state = gen.get_state()
    r = noise.uniform((200_000,), gen)
    assert r.dtype == torch.float32 and r.shape == (200_000,)
    assert 0.0 <= float(r.min()) and float(r.max()) < 1.0
    # mean, variance and the histogram of a uniform sample (bounds: many standard errors)
    assert abs(float(r.mean()) - 0.5) < 5 * math.sqrt(1 / 12 / len(r))
    assert abs(float(r.var()) - 1 / 12) < 0.002
    counts = torch.histc(r, bins=20, min=0.0, max=1.0)
    expected = len(r) / 20
    assert float(((counts - expected) ** 2 / expected).sum()) < 50  # chi-square, 19 degrees of freedom
    assert abs(float(torch.corrcoef(torch.stack([r[:-1], r[1:]]))[0, 1])) < 0.01  # neighbours uncorrelated
    assert not torch.equal(noise.uniform((200_000,), gen), r)  # the generator advanced
    gen.set_state(state)
    assert torch.equal(noise.uniform((200_000,), gen), r)  # the same state, the same noise
    assert noise.uniform((4, 3, 5), gen).shape == (4, 3, 5)


def test_noise_without_native_code_is_torch_rand(monkeypatch):
    monkeypatch.setattr(noise, "_library", lambda: None)
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(noise.uniform((7, 2), a), torch.rand((7, 2), generator=b))


@pytest.mark.skipif(noise._library() is None, reason="no native library (no C compiler, or PARAMLENS_NATIVE=0)")
def test_different_draws_are_independent():
    gen = torch.Generator().manual_seed(1)
    a, b = noise.uniform((100_000,), gen), noise.uniform((100_000,), gen)
    assert abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1])) < 0.015
