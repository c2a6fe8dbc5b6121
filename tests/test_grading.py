"""Judge grading of benchmark-rendered prompts: parsing, both-order averaging, caching, and the local judge's
constrained expected rating checked against logits computed independently."""

from __future__ import annotations

import math

import pytest
import torch

from alignrepro.judges.cache import JudgmentCache
from alignrepro.judges.grading import average_orders, cached_grades, parse_rating, parse_verdict


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is fine. Rating: [[7]]", 7.0),
        ("[[8.5]]", 8.5),
        ("Rating: [6]", 6.0),  # FastChat's looser fallback
        ("Rating: 7", math.nan),
        ("[[eleven]]", math.nan),
        ("[[11]]", math.nan),  # outside the scale: a failure, never clipped
        ("", math.nan),
    ],
)
def test_parse_rating(text, expected):
    got = parse_rating(text)
    assert (math.isnan(got) and math.isnan(expected)) or got == expected


def test_parse_verdict():
    assert parse_verdict("... so [[A]]") == 1.0
    assert parse_verdict("[[B]]") == 2.0
    assert parse_verdict("a tie: [[C]]") == 1.5
    assert math.isnan(parse_verdict("A is better"))
    assert math.isnan(parse_verdict("[[A]] or maybe [[B]]"))  # contradictory


def test_average_orders_cancels_position_bias():
    # A judge that always picks the first answer shown: 1.0 in both orders -> 1.5 (a tie) after mapping back.
    assert average_orders([1.0, 1.0], [1.0, 1.0]) == [1.5, 1.5]
    # A consistent judge: B wins in the first order, so A (shown first) loses in the swapped one.
    assert average_orders([2.0], [1.0]) == [2.0]
    assert math.isnan(average_orders([2.0], [math.nan])[0])


class CountingJudge:
    id, heuristic, settings = "count-v1", False, {}

    def __init__(self, values):
        self.values, self.calls = list(values), 0

    def rate(self, prompts, scale=(1, 10)):
        self.calls += len(prompts)
        return [self.values.pop(0) for _ in prompts]

    choose = rate


def test_cached_grades_hits_after_restart_and_never_caches_nan(tmp_path):
    prompts = [[{"role": "user", "content": f"q{i}"}] for i in range(3)]
    judge = CountingJudge([7.0, math.nan, 3.0])
    with JudgmentCache(tmp_path / "c.sqlite") as cache:
        first = cached_grades(judge, "rate", prompts, cache)
    assert first[0] == 7.0 and math.isnan(first[1]) and first[2] == 3.0
    again = CountingJudge([5.0])
    with JudgmentCache(tmp_path / "c.sqlite") as cache:  # a new process: only the NaN is asked again
        second = cached_grades(again, "rate", prompts, cache)
        assert (cache.hits, cache.misses) == (2, 1)
    assert again.calls == 1 and second == [7.0, 5.0, 3.0]
    # "choose" verdicts of the same prompts are other judgments: no hit
    with JudgmentCache(tmp_path / "c.sqlite") as cache:
        cached_grades(CountingJudge([1.0, 1.0, 1.0]), "choose", prompts, cache)
        assert cache.hits == 0


def test_local_rate_is_the_expected_rating_over_rating_tokens(ci_model):
    from alignrepro.judges.local import RATING_PREFIX, LocalLogprobJudge

    judge = LocalLogprobJudge(ci_model, batch_size=2, min_answer_mass=0.0)  # a random model: little mass on digits
    msgs = [
        [{"role": "user", "content": "Rate this answer: 'Paris'."}],
        [{"role": "user", "content": "Rate the answer 'Bananas' to 'capital of France?' please, in detail."}],
    ]
    got = judge.rate(msgs)
    details = judge.last_judgments
    tok, model = judge.tok, judge.model
    for m, value, detail in zip(msgs, got, details, strict=True):
        ids = tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True) + RATING_PREFIX
        ids = torch.tensor([tok.encode(ids, add_special_tokens=False)])
        with torch.no_grad():
            p = torch.softmax(model(ids).logits[0, -1].float(), -1)
            one = tok.encode("1", add_special_tokens=False)[0]
            q = torch.softmax(model(torch.cat([ids, torch.tensor([[one]])], 1)).logits[0, -1].float(), -1)
        digit = {r: p[tok.encode(str(r), add_special_tokens=False)[0]].item() for r in range(1, 10)}
        zero = q[tok.encode("0", add_special_tokens=False)[0]].item()
        close = sum(q[i].item() for i in judge.close_ids)
        share10 = zero / (zero + close)
        probs = {**digit, 1: digit[1] * (1 - share10), 10: digit[1] * share10}
        expected = sum(r * v for r, v in probs.items()) / sum(probs.values())
        assert value == pytest.approx(expected, rel=1e-4)
        assert 1.0 <= value <= 10.0
        assert detail.answer_mass == pytest.approx(sum(digit.values()), rel=1e-4)  # P(a rating token) at step one
    verdicts = judge.choose(msgs)
    assert all(1.0 <= v <= 2.0 for v in verdicts)


def test_shared_prefix_cache_changes_no_number(ci_model, monkeypatch):
    from alignrepro.judges.base import PairItem
    from alignrepro.judges.local import LocalLogprobJudge

    judge = LocalLogprobJudge(ci_model, batch_size=3, min_answer_mass=0.0)
    items = [PairItem(f"Question {i}: add {i} and {i * 3}.", f"It is {4 * i}.", "No idea" * i) for i in range(1, 6)]
    msgs = [[{"role": "system", "content": "You grade answers carefully. " * 4}, {"role": "user", "content": f"A{i}"}]
            for i in range(5)]  # fmt: skip
    n, cache = judge._prefix_cache([judge._encode_messages(m, "[[")[0] for m in msgs])
    assert n >= 16 and cache is not None  # the judge's instructions are shared
    with_cache = (judge.single_order(items), judge.rate(msgs), judge.choose(msgs))
    monkeypatch.setattr(judge, "_prefix_cache", lambda seqs: (0, None))
    without = (judge.single_order(items), judge.rate(msgs), judge.choose(msgs))
    for a, b in zip(with_cache, without, strict=True):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-5)
