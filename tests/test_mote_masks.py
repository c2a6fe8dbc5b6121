"""The step-skip attention mask: hand-checked semantics, p = 0 / p = 1, determinism, padding, and the 4D mask path
of the installed transformers (a causal 4D mask gives the default logits; hiding a block changes only later steps)."""

from __future__ import annotations

import pytest
import torch

from alignrepro.methods.mote.masks import (
    additive_mask,
    causal_keep,
    sample_hidden_blocks,
    step_skip_keep,
)
from alignrepro.models import load_model

# query ×2, analysis ×2, guidance ×2, answer ×2
STEPS = torch.tensor([[0, 0, 1, 1, 2, 2, 3, 3]])
Q, A, G, R = range(0, 2), range(2, 4), range(4, 6), range(6, 8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _expected(hide_analysis: bool, hide_guidance: bool) -> torch.Tensor:
    keep = torch.ones(8, 8, dtype=torch.bool).tril()
    for i in list(G) + list(R):
        for j in A:
            keep[i, j] &= not hide_analysis
    for i in R:
        for j in G:
            keep[i, j] &= not hide_guidance
    return keep


@pytest.mark.parametrize("hide", [(False, False), (True, False), (False, True), (True, True)])
def test_hidden_blocks_masked_from_later_steps_only(hide):
    keep = step_skip_keep(STEPS, hidden=torch.tensor([hide]))
    assert keep.shape == (1, 1, 8, 8) and keep.dtype == torch.bool
    assert torch.equal(keep[0, 0], _expected(*hide))
    # the query is always visible to every later position; a block always sees itself
    assert keep[0, 0][:, list(Q)].tril().sum() == torch.ones(8, 2).tril().sum()
    for block in (A, G, R):
        for i in block:
            assert all(keep[0, 0, i, j] for j in block if j <= i)


def test_p0_is_causal_and_p1_hides_all_earlier_reasoning():
    steps = STEPS.repeat(16, 1)
    assert torch.equal(step_skip_keep(steps, p=0.0), causal_keep(torch.ones_like(steps)))
    keep = step_skip_keep(steps, p=1.0)[:, 0]
    assert torch.equal(keep, _expected(True, True).expand(16, 8, 8))
    later_sees_reasoning = keep[:, list(G) + list(R)][:, :, list(A)].any() or keep[:, list(R)][:, :, list(G)].any()
    assert not later_sees_reasoning
    assert keep[:, 2:, list(Q)].all()  # query visible to every chain token


def test_draws_are_per_sample_independent_and_seeded():
    steps = STEPS.repeat(400, 1)
    a = sample_hidden_blocks(steps, 0.5, torch.Generator().manual_seed(3))
    b = sample_hidden_blocks(steps, 0.5, torch.Generator().manual_seed(3))
    c = sample_hidden_blocks(steps, 0.5, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    rates = a.float().mean(0)
    assert ((rates > 0.4) & (rates < 0.6)).all()  # p = 0.5 per block
    both = (a[:, 0] & a[:, 1]).float().mean()
    assert 0.17 < both < 0.33  # independent blocks: ≈ p²
    # blocks absent from a sample are never marked
    no_guidance = torch.tensor([[0, 0, 1, 1, 3, 3]]).repeat(50, 1)
    assert not sample_hidden_blocks(no_guidance, 1.0)[:, 1].any()
    with pytest.raises(ValueError):
        sample_hidden_blocks(steps, 1.5)


def test_padding_and_no_empty_rows():
    steps = torch.tensor([[0, 1, 3, 0, 0], [0, 0, 0, 1, 3]])
    attn = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1]])  # right and left padding
    keep = step_skip_keep(steps, attn, hidden=torch.tensor([[True, False], [True, False]]))[:, 0]
    assert torch.equal(keep[0][:, 3:], torch.eye(5, dtype=torch.bool)[:, 3:])  # pad keys: only their own diagonal
    assert not keep[0, 2, 1] and keep[0, 2, 0]  # answer cannot see the hidden analysis, sees the query
    assert not keep[1, 4, 3] and keep[1, 4, 2] and not keep[1, 4, 0]  # left padding hidden
    assert keep.any(-1).all()  # every row attends somewhere (no NaN softmax)
    add = additive_mask(keep[:, None], torch.float32)
    assert add.shape == (2, 1, 5, 5) and (add[keep[:, None]] == 0).all()
    assert (add[~keep[:, None]] == torch.finfo(torch.float32).min).all()


@pytest.mark.parametrize("attn_impl", ["sdpa", "eager"])
def test_causal_4d_mask_matches_default_path(ci_model, attn_impl):
    model = load_model(ci_model).eval()
    model.config._attn_implementation = attn_impl
    ids = torch.randint(3, 384, (2, 9), generator=torch.Generator().manual_seed(0))
    attn = torch.ones(2, 9, dtype=torch.long)
    attn[1, 6:] = 0  # right padding
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=attn).logits
        got = model(input_ids=ids, attention_mask=additive_mask(causal_keep(attn), torch.float32)).logits
    valid = attn.bool()
    torch.testing.assert_close(got[valid], ref[valid], atol=1e-5, rtol=1e-5)


def test_hiding_analysis_changes_only_later_steps(ci_model):
    model = load_model(ci_model).eval()
    ids = torch.randint(3, 384, (1, 8), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=additive_mask(step_skip_keep(STEPS, p=0.0), torch.float32)).logits
        hid = step_skip_keep(STEPS, hidden=torch.tensor([[True, False]]))
        got = model(input_ids=ids, attention_mask=additive_mask(hid, torch.float32)).logits
    diff = (got - ref).abs().amax(-1)[0]
    assert (diff[:4] == 0).all()  # query and analysis: unchanged
    assert (diff[4:] > 1e-7).all()  # guidance and answer no longer see the analysis
