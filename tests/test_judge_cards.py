"""Judge cards: the shipped labelled set is what the builder makes, its labels are right, and the card's
agreement / position-bias / length-bias numbers match hand-computed values on fake judges."""

from __future__ import annotations

import json
import math

import pytest

from alignrepro.evals.judges import card, labelled_set
from alignrepro.io import read_jsonl, sha256_file
from alignrepro.judges.base import PairItem


@pytest.fixture(scope="module")
def rows():
    return read_jsonl(labelled_set.SHIPPED)


def test_shipped_set_is_rebuilt_byte_for_byte(tmp_path):
    labelled_set.main(["--out", str(tmp_path / "set.jsonl")])
    assert sha256_file(tmp_path / "set.jsonl") == sha256_file(labelled_set.SHIPPED)


def test_set_sizes_and_labels(rows):
    from alignrepro.data.records import Record
    from alignrepro.data.verifiable import is_correct

    kinds = {k: sum(r["kind"] == k for r in rows) for k in labelled_set.SIZES}
    assert kinds == labelled_set.SIZES
    assert {r["label"] for r in rows if r["kind"] == "tie"} == {1.5}
    strict = [r for r in rows if r["kind"] != "tie"]
    assert {r["label"] for r in strict} == {1.0, 2.0}  # the better answer is in both positions
    for r in rows:
        if r["kind"] in ("verifiable", "tie"):
            rec = Record.from_dict(r["record"])
            ok1, ok2 = is_correct(rec, r["output_1"]), is_correct(rec, r["output_2"])
            assert (ok1, ok2) == ({1.0: (True, False), 2.0: (False, True), 1.5: (True, True)}[r["label"]])
    for r in rows:
        better, worse = (r["output_1"], r["output_2"]) if r["label"] != 2.0 else (r["output_2"], r["output_1"])
        if r["kind"] == "harmful":  # a refusal quoting the request beats a compliance quoting it
            assert any(better.startswith(o) for o in labelled_set.REFUSAL_OPEN), better
            assert any(worse.startswith(o.split("{")[0]) for o in labelled_set.COMPLY_OPEN), worse
        assert r["licence"] and r["source"]


def test_every_kind_has_diverse_texts(rows):
    """No kind reuses a handful of fixed answers (v1 had 3 refusals and 2 compliances for all 30 harmful pairs)."""
    for kind in labelled_set.SIZES:
        pairs = [r for r in rows if r["kind"] == kind]
        better = [r["output_1"] if r["label"] != 2.0 else r["output_2"] for r in pairs]
        worse = [r["output_2"] if r["label"] != 2.0 else r["output_1"] for r in pairs]
        assert len(set(better)) >= 0.9 * len(pairs), kind
        assert len(set(worse)) >= 0.9 * len(pairs), kind


class FakeJudge:
    heuristic, prompt_hash, settings = False, "fake", {}

    def __init__(self, id, fn):
        self.id, self.fn = id, fn

    def single_order(self, items: list[PairItem]) -> list[float]:
        return [self.fn(it) for it in items]


class LabelledFakeJudge(FakeJudge):
    """A judge whose prompt names the two answers by labels it can swap (like the local judge's m / M)."""

    label_swap, settings = True, {"labels": ["m", "M"]}

    def single_order(self, items, swap_labels=False):
        return [self.fn(it, swap_labels) for it in items]

    def preferences(self, items):
        return self.single_order(items)


def _oracle_fn(rows):
    better = {}
    for r in rows:
        if r["label"] != 1.5:
            good = r["output_1"] if r["label"] == 1.0 else r["output_2"]
            better[(r["instruction"], good)] = True
    return lambda it: (
        1.0 if (it.instruction, it.output_1) in better else 2.0 if (it.instruction, it.output_2) in better else 1.5
    )


def test_first_position_judge_is_at_chance_with_full_position_bias(rows):
    m = card.measure_pairwise(FakeJudge("first", lambda it: 1.0), rows)
    assert m["agreement"] == 50.0  # both orders averaged: every strict pair becomes an exact tie, scored ½
    assert m["position_first_share"] == 1.0 and m["order_consistency"] == 0.0
    assert m["ties"]["within_band"] == 1.0


def test_label_knowing_judge_agrees_fully_without_position_bias(rows):
    m = card.measure_pairwise(FakeJudge("knows", _oracle_fn(rows)), rows)
    assert m["agreement"] == 100.0 and m["n"] == 120
    assert m["ci95"][0] > 96.0
    assert m["position_first_share"] == pytest.approx(0.5)
    assert m["order_consistency"] == 1.0
    assert all(b["agreement"] == 100.0 for b in m["by_kind"].values())


def test_length_bias_is_measured(rows):
    longer = FakeJudge("longer", lambda it: 2.0 if len(it.output_2) > len(it.output_1) else 1.0)
    m = card.measure_pairwise(longer, rows)
    lb = m["length_bias"]
    assert lb["prefers_longer"] == 1.0
    strict = [r for r in rows if r["label"] != 1.5]
    right = sum(
        0.5
        if len(r["output_1"]) == len(r["output_2"])
        else float((len(r["output_2"]) > len(r["output_1"])) == (r["label"] == 2.0))
        for r in strict
    )
    assert m["agreement"] == pytest.approx(100 * right / len(strict))  # right exactly when the longer is better
    assert lb["ties_prefers_longer"] == 1.0


def test_rating_agreement_and_markdown(rows):
    class Rater(FakeJudge):
        def rate(self, prompts, scale=(1, 10)):
            # 9 for the MT-Bench reference answers and refusals of harmful requests, 2 otherwise
            good = {
                f"[Question]\n{r['instruction']}\n\n[The Start of Assistant's Answer]\n"
                f"{r['output_1'] if r['label'] == 1.0 else r['output_2']}\n[The End"
                for r in rows
                if r["label"] != 1.5
            }
            return [9.0 if any(g in p[-1]["content"] for g in good) else 2.0 for p in prompts]

    judge = Rater("rater", _oracle_fn(rows))
    c = card.build_card("rater", {"backend": "fake"}, rows[:60], judge=judge)
    assert c["rating"]["agreement"] == 100.0 and c["rating"]["mean_rating_better"] == 9.0
    md = card.render_markdown(c)
    assert "100.0 %" in md and "| verifiable |" in md and "Single-answer rating" in md
    json.dumps(c)  # a card is plain JSON


def test_card_cli_writes_json_and_markdown(tmp_path):
    out_json, out_md = tmp_path / "h.json", tmp_path / "h.md"
    c = card.main(["--name", "heuristic", "--judge-config", '{"backend": "heuristic"}', "--per-kind", "2",
                   "--out-json", str(out_json), "--out-md", str(out_md), "--tier", "ci"])  # fmt: skip
    assert c["labelled_set"]["n"] == 10 and c["labelled_set"]["per_kind"] == 2
    assert json.loads(out_json.read_text())["provenance"]["labelled_set_sha256"] == sha256_file(labelled_set.SHIPPED)
    assert "HEURISTIC" in out_md.read_text() and "first 2 of each kind" in out_md.read_text()


def test_card_line_heads_the_papers_tables():
    """evals/judges/lines.card_line (shared by MORLAIF and MoTE), on a hand-written card."""
    from alignrepro.evals.judges.lines import card_line

    c = {"judge_id": "hf:abc", "name": "tiny-judge", "pairwise": {"agreement": 71.25, "ci95": [60.04, 80.5], "n": 80}}
    assert card_line(c, "tiny") == ("judge `hf:abc` (card `tiny-judge`: pairwise agreement 71.2 % [60.0, 80.5], n=80)")
    assert card_line({**c, "heuristic": True}, "tiny").endswith(
        "n=80) — **a HEURISTIC judge (ci tier): its numbers mean nothing**"
    )
    assert card_line(None, "tiny") == "judge `tiny` (no judge card)"
    no_ci = card_line({**c, "pairwise": {"agreement": 50.0, "ci95": None, "n": 0}}, "tiny")
    assert "[nan, nan], n=0" in no_ci


def test_pure_label_token_bias_shows_as_label_bias_not_position_bias(rows):
    """Always answers the label `M`: with the labels fixed per slot that looks like "always the second answer"; with
    them swapped as well the card puts it where it belongs."""
    m = card.measure_pairwise(LabelledFakeJudge("says-M", lambda it, sl: 1.0 if sl else 2.0), rows)
    assert m["label_first_share"] == 0.0 and m["label_first_ci95"][1] < 0.05  # never `m`
    assert m["position_first_share"] == pytest.approx(0.5)
    lo, hi = m["position_first_ci95"]
    assert lo <= 0.5 <= hi and hi - lo < 0.05  # no position bias
    assert m["n_judgments"] == 4 * len(rows) and m["agreement"] == 50.0
    md = card.render_markdown({"name": "says-M", "judge_id": "f", "prompt_hash": "p", "heuristic": False,
                               "labelled_set": {"version": "v2", "n": len(rows), "kinds": ["k"]},
                               "pairwise": m, "rating": None, "dollars_per_1k": 0.0})  # fmt: skip
    assert "pick the label `m` (vs `M`) 0.0 %" in md


def test_pure_position_bias_shows_as_position_bias_not_label_bias(rows):
    m = card.measure_pairwise(LabelledFakeJudge("first", lambda it, sl: 1.0), rows)
    assert m["position_first_share"] == 1.0 and m["position_first_ci95"][0] > 0.95
    assert m["label_first_share"] == pytest.approx(0.5)
    lo, hi = m["label_first_ci95"]
    assert lo <= 0.5 <= hi and hi - lo < 0.05


def test_card_counts_unparsable_and_truncated_judgments(rows):
    """Judgments whose answer-token mass fell below the threshold are NaN and counted; cut prompts are named."""
    from alignrepro.judges.base import Judgment

    sub = rows[:10]

    class LowMass(FakeJudge):
        min_answer_mass = 0.5

        def single_order(self, items):
            self.last_judgments = [
                Judgment(math.nan, 0.1, True) if it.instruction == sub[0]["instruction"]
                else Judgment(1.0, 0.9, False, truncated=it.instruction == sub[1]["instruction"])
                for it in items
            ]  # fmt: skip
            return [j.value for j in self.last_judgments]

    m = card.measure_pairwise(LowMass("low", None), sub)
    ck = m["checks"]
    assert ck["n_unparsable"] == 2 and ck["n_judgments"] == 20  # the first pair, in both orders
    assert m["n_failed"] == 1 and m["n"] + m["ties"]["n"] == 9  # the unparsable pair is never scored
    assert ck["n_truncated"] == 2 and ck["truncated_ids"] == [sub[1]["id"]]
    assert ck["answer_mass_mean"] == pytest.approx((2 * 0.1 + 18 * 0.9) / 20) and ck["min_answer_mass"] == 0.5
    md = "\n".join(card._checks_lines(ck, "single-order verdicts"))
    assert "**2 of 20** single-order verdicts" in md and sub[1]["id"] in md


def test_biases_show_even_when_every_verdict_is_unparsable(rows):
    """A judge that answers no label at all still leans to one: its biases are read from the renormalised verdicts,
    while agreement (a score) is left empty."""
    from alignrepro.judges.base import Judgment

    class Mumbles(LabelledFakeJudge):
        def single_order(self, items, swap_labels=False):
            self.last_judgments = [Judgment(math.nan, 0.1, True, False, 1.0 if swap_labels else 2.0) for _ in items]
            return [j.value for j in self.last_judgments]

    m = card.measure_pairwise(Mumbles("mumbles", None), rows[:20])
    assert m["agreement"] is None and m["n"] == 0 and m["checks"]["n_unparsable"] == 80
    assert m["label_first_share"] == 0.0 and m["position_first_share"] == pytest.approx(0.5)
