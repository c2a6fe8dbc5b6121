"""MORLAIF scalarizers against hand-computed values: batch > 1, ties, negative inputs, the lower median, weights."""

from __future__ import annotations

import math

import pytest
import torch

from alignrepro.methods.morlaif.scalarizers import SCALARIZERS, scalarize

# Two samples of 4 principles: the second has a tie at its minimum (and at its lower median).
S = torch.tensor([[1.0, -2.0, 3.0, 0.0], [-1.0, -1.0, 2.0, 5.0]], dtype=torch.float64)


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def softmin_mean(row: list[float], t: float = 1.0) -> float:
    e = [math.exp(-x / t) for x in row]
    return sum(w * x for w, x in zip(e, row, strict=True)) / sum(e)


EXPECTED = {
    "linear": [2.0, 5.0],
    "max_median": [0.0, -1.0],  # sorted [-2, 0, 1, 3] and [-1, -1, 2, 5]: the LOWER middle value
    "max_min": [-2.0, -1.0],
    "soft_max_min": [softmin_mean([1, -2, 3, 0]), softmin_mean([-1, -1, 2, 5])],
    # mean - 0.5 * population variance: 0.5 - 0.5 * 13/4 ; 1.25 - 0.5 * 24.75/4
    "uncertainty_weighted": [-1.125, -1.84375],
    "lower_quantile": [-2.0, -1.0],  # floor(4 / 3) = 1 smallest
    "bernoulli_nash": [
        (sig(1) * sig(-2) * sig(3) * sig(0)) ** 0.25,
        (sig(-1) * sig(-1) * sig(2) * sig(5)) ** 0.25,
    ],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_hand_computed_batch(name):
    out = scalarize(name, S)
    assert out.shape == (2,)
    assert out.tolist() == pytest.approx(EXPECTED[name], abs=1e-12)


def test_all_scalarizers_covered():
    assert set(SCALARIZERS) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_per_sample_any_leading_shape(name):
    """The official code reduced over principles x batch; here a sample's reward never depends on its batch-mates."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 12, generator=g, dtype=torch.float64)
    w = torch.randn(12, generator=g, dtype=torch.float64)
    batched = scalarize(name, x, w)
    assert batched.shape == (3, 5)
    for i in range(3):
        for j in range(5):
            alone = scalarize(name, x[i, j][None], w)[0]
            assert batched[i, j].item() == pytest.approx(alone.item(), abs=1e-12)
    # a different neighbour leaves the first sample's reward unchanged
    y = x.clone()
    y[1:] = -y[1:] * 3
    assert torch.allclose(scalarize(name, y, w)[0], batched[0])


def test_weights_multiply_first():
    w = torch.tensor([2.0, 0.5, -1.0, 1.0], dtype=torch.float64)  # row 0 becomes [2, -1, -3, 0]
    assert scalarize("linear", S[:1], w).item() == pytest.approx(-2.0)
    assert scalarize("max_min", S[:1], w).item() == pytest.approx(-3.0)
    assert scalarize("max_median", S[:1], w).item() == pytest.approx(-1.0)  # sorted [-3, -1, 0, 2]
    assert scalarize("lower_quantile", S[:1], w).item() == pytest.approx(-3.0)
    assert scalarize("uncertainty_weighted", S[:1], w).item() == pytest.approx(-0.5 - 0.5 * 3.25)


def test_median_odd_and_even():
    assert scalarize("max_median", torch.tensor([3.0, 1.0, 2.0])).item() == 2.0
    # even n: the lower of the two middle values (torch.median), not their mean (numpy)
    assert scalarize("max_median", torch.tensor([4.0, 1.0, 3.0, 2.0])).item() == 2.0
    twelve = torch.tensor([float(v) for v in [7, 3, 11, 0, 9, 5, 1, 10, 4, 8, 2, 6]])
    assert scalarize("max_median", twelve).item() == 5.0


def test_lower_quantile_counts():
    twelve = torch.tensor([float(v) for v in [7, 3, 11, 0, 9, 5, 1, 10, 4, 8, 2, 6]])
    assert scalarize("lower_quantile", twelve).item() == pytest.approx((0 + 1 + 2 + 3) / 4)  # floor(12/3) = 4
    assert scalarize("lower_quantile", torch.tensor([5.0, -7.0])).item() == -7.0  # at least one
    assert scalarize("lower_quantile", twelve, quantile=0.5).item() == pytest.approx(2.5)  # 6 smallest


def test_soft_max_min_temperature():
    x = torch.tensor([[0.0, 10.0]])
    # a low temperature approaches the minimum, a high one the mean
    assert scalarize("soft_max_min", x, temperature=0.01).item() == pytest.approx(0.0, abs=1e-6)
    assert scalarize("soft_max_min", x, temperature=1e6).item() == pytest.approx(5.0, abs=1e-3)
    assert scalarize("soft_max_min", x).item() == pytest.approx(10 * math.exp(-10) / (1 + math.exp(-10)))


def test_bernoulli_nash_negative_scores():
    neg = torch.tensor([[-1.0, 2.0, 3.0], [-1.0, -2.0, 3.0]])
    nash = scalarize("bernoulli_nash", neg)
    assert (nash > 0).all() and (nash < 1).all()
    assert nash[0].item() == pytest.approx((sig(-1) * sig(2) * sig(3)) ** (1 / 3))
    # monotone in every principle: raising one score raises the reward (the raw product is not)
    up = neg.clone()
    up[:, 0] += 1
    assert (scalarize("bernoulli_nash", up) > nash).all()
    raw = scalarize("bernoulli_nash", neg, nash="product")
    assert raw.tolist() == pytest.approx([-6.0, 6.0])
    assert scalarize("bernoulli_nash", up, nash="product")[0].item() == pytest.approx(0.0)  # raw product: worse


def test_uncertainty_inverse_variance_option():
    x = torch.tensor([[1.0, 3.0], [2.0, 2.0]])
    out = scalarize("uncertainty_weighted", x, uncertainty="inverse_variance", variances=torch.tensor([1.0, 4.0]))
    assert out.tolist() == pytest.approx([(1 + 3 / 4) / 1.25, 2.0])
    with pytest.raises(ValueError):
        scalarize("uncertainty_weighted", x, uncertainty="inverse_variance")


def test_shared_params_and_errors():
    # one params dict for every arm: parameters of other scalarizers are ignored, unknown names are not
    params = {"temperature": 1.0, "lam": 0.5, "quantile": 1 / 3, "nash": "sigmoid"}
    for name in SCALARIZERS:
        assert scalarize(name, S, **params).shape == (2,)
    with pytest.raises(TypeError):
        scalarize("linear", S, lamda=0.5)
    with pytest.raises(KeyError):
        scalarize("nash", S)
    with pytest.raises(ValueError):
        scalarize("linear", S, torch.ones(3))
