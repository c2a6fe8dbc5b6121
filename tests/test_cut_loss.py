"""CUT loss against values computed by hand (math.exp / math.log on the same logits), vocabulary of 4."""

from __future__ import annotations

import math

import pytest
import torch

from alignrepro.methods.cut.loss import cut_loss, log1m_softmax_at

X = -100  # unlabelled


def softmax(row: list[float]) -> list[float]:
    z = sum(math.exp(v) for v in row)
    return [math.exp(v) / z for v in row]


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def logit_for(p: float) -> float:
    """Logit of token 0 in [l, 0, 0, 0] giving softmax probability p."""
    return math.log(3 * p / (1 - p))


def single_token_case(p_alignn: float, p_neg: float):
    """One Align-N/Misalign pair with one response token (id 0) predicted at position 0."""
    logits_pos = t([[[logit_for(p_alignn), 0, 0, 0], [0, 0, 0, 0]]])
    logits_neg = t([[[logit_for(p_neg), 0, 0, 0], [0, 0, 0, 0]]])
    labels = torch.tensor([[X, 0]])
    return logits_pos, labels, logits_neg, labels.clone(), torch.tensor([True])


@pytest.mark.parametrize("factor, detected", [(1.001, True), (0.999, False)])
def test_threshold_boundary(factor: float, detected: bool) -> None:
    p_neg = 0.4
    p_alignn = p_neg * 1.1 * factor  # ratio just above / just below lambda = 1.1
    out = cut_loss(*single_token_case(p_alignn, p_neg), threshold=1.1)
    expected_ul = -math.log(1 - p_neg) if detected else -math.log(p_neg)
    assert out.n_detected == int(detected) and out.n_neg_tokens == 1
    assert out.mle.item() == pytest.approx(-math.log(p_alignn), rel=1e-5)
    assert out.ul.item() == pytest.approx(expected_ul, rel=1e-5)
    assert out.loss.item() == pytest.approx((-math.log(p_alignn) + expected_ul) / 2, rel=1e-5)


def test_all_positive_batch_is_plain_mle() -> None:
    lp = [[[1, 2, 0, -1], [0.5, 0, 0, 3], [0, 0, 0, 0]], [[2, 0, 1, 0], [0, 1, 0, 0], [1, 1, 1, 1]]]
    labels = torch.tensor([[X, 1, 3], [X, X, 2]])
    out = cut_loss(t(lp), labels, torch.zeros(2, 3, 4), torch.full((2, 3), X), torch.tensor([False, False]))
    nll = [-math.log(softmax(lp[0][0])[1]), -math.log(softmax(lp[0][1])[3]), -math.log(softmax(lp[1][1])[2])]
    assert out.ul is None and out.n_detected == 0 and out.n_neg_tokens == 0
    assert out.mle.item() == pytest.approx(sum(nll) / 3, rel=1e-5)
    assert out.loss.item() == out.mle.item()


def test_mixed_batch_aligns_response_positions() -> None:
    # Row 0: Align-P (no Misalign). Row 1: Align-N, prompt of 1 token, response [3, 1], right-padded;
    # its Misalign row has a 2-token prompt, so the same response sits one position later.
    lp = [
        [[0, 0, 0, 0], [1, 0, 2, 0], [0, 1, 0, 2], [0, 0, 0, 0]],
        [[0, 0, 0, 2.0], [0, 1.5, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]],
    ]
    ln = [
        [[0, 0, 0, 0]] * 4,
        [[9, 9, 9, 9], [0, 0, 0, 1.0], [0, 1.5, 0, 0], [0, 0, 0, 0]],
    ]
    labels_pos = torch.tensor([[X, X, 2, 3], [X, 3, 1, X]])
    labels_neg = torch.tensor([[X, X, X, X], [X, X, 3, 1]])
    out = cut_loss(t(lp), labels_pos, t(ln), labels_neg, torch.tensor([False, True]), threshold=1.1)

    mle_terms = [softmax(lp[0][1])[2], softmax(lp[0][2])[3], softmax(lp[1][0])[3], softmax(lp[1][1])[1]]
    mle = -sum(math.log(p) for p in mle_terms) / 4
    # token 3: p_A = e^2/(e^2+3) vs p_M = e/(e+3): ratio ~1.41 > 1.1 -> unlikelihood; token 1: equal -> MLE
    pa3, pm3 = softmax(lp[1][0])[3], softmax(ln[1][1])[3]
    pa1, pm1 = softmax(lp[1][1])[1], softmax(ln[1][2])[1]
    assert pa3 / pm3 > 1.1 and pa1 / pm1 < 1.1
    ul = (-math.log(1 - pm3) - math.log(pm1)) / 2
    assert out.n_detected == 1 and out.n_neg_tokens == 2
    assert out.mle.item() == pytest.approx(mle, rel=1e-5)
    assert out.ul.item() == pytest.approx(ul, rel=1e-5)
    assert out.loss.item() == pytest.approx((mle + ul) / 2, rel=1e-5)
    # Passing only the Misalign rows gives the same result.
    compact = cut_loss(t(lp), labels_pos, t(ln)[1:], labels_neg[1:], torch.tensor([False, True]))
    assert compact.loss.item() == pytest.approx(out.loss.item(), rel=1e-6)


def test_mismatched_response_ids_are_rejected() -> None:
    logits = torch.zeros(1, 3, 4)
    with pytest.raises(ValueError, match="differ"):
        cut_loss(logits, torch.tensor([[X, 1, 2]]), logits, torch.tensor([[X, 1, 3]]), torch.tensor([True]))


def test_gamma_dynamic_weight() -> None:
    p_alignn, p_neg, alpha, gamma = 0.8, 0.3, 0.5, 2.0
    out = cut_loss(*single_token_case(p_alignn, p_neg), threshold=1.1, weight_unlike=alpha, gamma=gamma)
    assert out.n_detected == 1
    assert out.ul.item() == pytest.approx(alpha * p_alignn**gamma * -math.log(1 - p_neg), rel=1e-5)
    plain = cut_loss(*single_token_case(p_alignn, p_neg), threshold=1.1, weight_unlike=alpha)
    assert plain.ul.item() == pytest.approx(alpha * -math.log(1 - p_neg), rel=1e-5)  # gamma = 0: official code


def test_log1m_p_is_stable_when_p_goes_to_one() -> None:
    a = float(torch.tensor(math.log(3 / 1e-9 - 3)))  # p = 1 - 1e-9 for [a, 0, 0, 0] (a as float32 sees it)
    expected = math.log(math.exp(a) + 3) - math.log(3)  # -log(1 - p) = log((e^a + 3) / 3) ~ 20.72
    assert expected == pytest.approx(-math.log(1e-9), rel=1e-4)
    for logit, want in [(a, expected), (100.0, 100.0 - math.log(3))]:
        lp = t([[[logit, 0, 0, 0], [0, 0, 0, 0]]]).requires_grad_()
        ln = t([[[logit, 0, 0, 0], [0, 0, 0, 0]]]).requires_grad_()
        labels = torch.tensor([[X, 0]])
        out = cut_loss(lp, labels, ln, labels.clone(), torch.tensor([True]), threshold=0.5)  # ratio 1 > 0.5
        assert out.n_detected == 1
        assert out.ul.item() == pytest.approx(want, rel=1e-4)
        out.loss.backward()
        assert torch.isfinite(out.loss) and torch.isfinite(ln.grad).all() and torch.isfinite(lp.grad).all()
    direct = log1m_softmax_at(t([[a, 0, 0, 0]]), torch.tensor([0]))
    assert direct.item() == pytest.approx(-expected, rel=1e-4)


def test_gradient_flows_only_through_p_neg() -> None:
    # One Align-N/Misalign pair, response [0, 2]: token 0 detected, token 2 not. gamma = 1, alpha = 0.5.
    lp_rows = [[2.0, 0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 0]]
    ln_rows = [[0.5, 0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 0]]
    lp, ln = t([lp_rows]).requires_grad_(), t([ln_rows]).requires_grad_()
    labels = torch.tensor([[X, 0, 2]])
    alpha, gamma = 0.5, 1.0
    out = cut_loss(lp, labels, ln, labels.clone(), torch.tensor([True]), weight_unlike=alpha, gamma=gamma)
    assert out.n_detected == 1
    out.loss.backward()

    # logits_pos only get the MLE gradient: 0.5 * (softmax - onehot) / 2 tokens (ratio and weight are detached).
    want_pos = [[0.0] * 4 for _ in range(3)]
    for pos, y in [(0, 0), (1, 2)]:
        p = softmax(lp_rows[pos])
        want_pos[pos] = [0.5 * (p[j] - (j == y)) / 2 for j in range(4)]
    assert torch.allclose(lp.grad[0], t(want_pos), atol=1e-6)

    # logits_neg: detected token: 0.5/2 * alpha * p_A^gamma * d(-log(1-p_y))/dx = [p_y; -p_j p_y / (1 - p_y)];
    # non-detected token: 0.5/2 * (softmax - onehot).
    p0, p_a = softmax(ln_rows[0]), softmax(lp_rows[0])[0]
    w = 0.25 * alpha * p_a**gamma
    want_neg = [[w * (p0[0] if j == 0 else -p0[j] * p0[0] / (1 - p0[0])) for j in range(4)]]
    p1 = softmax(ln_rows[1])
    want_neg.append([0.25 * (p1[j] - (j == 2)) for j in range(4)])
    want_neg.append([0.0] * 4)
    assert torch.allclose(ln.grad[0], t(want_neg), atol=1e-6)


def test_bf16_logits_use_float32_softmax() -> None:
    out32 = cut_loss(*single_token_case(0.5, 0.25))
    lp, labels, ln, labels_n, has_neg = single_token_case(0.5, 0.25)
    out16 = cut_loss(lp.bfloat16(), labels, ln.bfloat16(), labels_n, has_neg)
    assert out16.loss.dtype == torch.float32
    assert out16.loss.item() == pytest.approx(out32.loss.item(), rel=2e-2)
