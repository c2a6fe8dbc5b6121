"""MoTE models on the shared benchmarks: the answer budget of the step decoder, the generation backend the shared
layer picks for a MoTE folder (single- and multi-turn), and lm-eval scoring with every token routed as query."""

from __future__ import annotations

import pytest
import torch

from alignrepro.generation import answer_conversations, backend_for
from alignrepro.methods.mote import infer
from alignrepro.methods.mote.backend import MoteBackend
from alignrepro.methods.mote.moe_lora import routing
from alignrepro.methods.mote.steps import STEP_IDS

pytestmark = pytest.mark.usefixtures("one_torch_thread")


CONVS = [
    [{"role": "user", "content": "how many apples"}],
    [{"role": "user", "content": "sort a list " * 3}],
    # an MT-Bench second turn: the first answer is plain text in the history
    [
        {"role": "user", "content": "name a fruit"},
        {"role": "assistant", "content": "apple"},
        {"role": "user", "content": "another one"},
    ],
]


def _answer_tokens(decoder: infer.StepDecoder, ids: list[int]) -> int:
    start, end = decoder.start_of["answer"], decoder.end_of["answer"]
    return len([t for t in ids[ids.index(start) + 1 :] if t != end])


def test_answer_budget_caps_the_answer_and_leaves_reasoning_alone(mote_model_dirs):
    model, tok, _ = infer.load_trained(mote_model_dirs["mote"])
    decoder = infer.StepDecoder(model, tok)
    free = decoder.generate(CONVS[:2], "q_ana_a", max_new_tokens=16, step_max_tokens=3)
    capped = decoder.generate(CONVS[:2], "q_ana_a", max_new_tokens=16, step_max_tokens=3, answer_max_tokens=2)
    for f, c in zip(free, capped, strict=True):
        assert c["token_ids"] == f["token_ids"][: len(c["token_ids"])]  # same chain, cut in the answer
        assert c["steps"]["analysis"] == f["steps"]["analysis"]
        n_free = _answer_tokens(decoder, f["token_ids"])
        assert _answer_tokens(decoder, c["token_ids"]) == min(2, n_free)
        assert ("budget_exhausted" in c["fallbacks"]) == (n_free >= 2)


def test_shared_layer_answers_with_the_step_decoder(mote_model_dirs):
    spec = {"batch_size": 2, "step_max_tokens": 3, "temperature": 0.0, "dtype": "float32"}
    backend, template, _ = backend_for(spec, mote_model_dirs["mote"])
    assert isinstance(backend, MoteBackend) and template == "chat"
    assert backend.identity["kind"] == "mote" and backend.identity["adapter_sha256"]
    texts = answer_conversations(backend, CONVS, template, 4)
    step_max, budget = backend.budgets(4)
    assert (step_max, budget) == (3, 2 * (3 + 2) + 4 + 2)
    # batched by length in the backend, one at a time here: the same answers (the answer step only)
    one_by_one = [
        backend.decoder.generate([c], "adaptive", budget, step_max, answer_max_tokens=4)[0]["output"] for c in CONVS
    ]
    assert texts == one_by_one and all(isinstance(t, str) for t in texts)
    assert backend.last_stats["decoding"] == {
        "mode": "adaptive",
        "answer_max_tokens": 4,
        "step_max_tokens": 3,
        "chain_budget": budget,
    }
    assert sum(backend.last_stats["chain_shapes"].values()) == len(CONVS)


def test_lmeval_scores_a_mote_model_with_query_routing(mote_model_dirs):
    from lm_eval.api.instance import Instance

    from alignrepro.evals.lmeval.run import build_lm

    lm = build_lm(mote_model_dirs["mote"], "float32", batch_size=2)
    context, continuation = "Question: how many apples?\nAnswer:", " three"
    [(ll, _)] = lm.loglikelihood(
        [Instance(request_type="loglikelihood", doc={}, arguments=(context, continuation), idx=0)],
        disable_tqdm=True,
    )
    # by hand: a fresh copy, routed explicitly; every token a query token (E_analysis + shared at inference)
    model, _, _ = infer.load_trained(mote_model_dirs["mote"])
    ctx, cont = lm.tok_encode(context), lm.tok_encode(continuation)
    ids = torch.tensor([ctx + cont])

    def cont_logprob(step: str) -> float:
        with torch.no_grad(), routing(model, torch.full_like(ids, STEP_IDS[step])):
            logp = model(input_ids=ids).logits[0].log_softmax(-1)
        return sum(float(logp[len(ctx) - 1 + i, t]) for i, t in enumerate(cont))

    assert ll == pytest.approx(cont_logprob("query"), abs=1e-4)
    assert abs(ll - cont_logprob("answer")) > 1e-3  # the routing matters: the answer expert scores differently
