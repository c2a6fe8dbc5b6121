"""The cross-paper leaderboard on small synthetic score files: its stated ranking column (direction, ties, missing
values), a 95 % interval (or the reason for none) on every numeric column, the average answer length, and the
summary printed at the end of the rule."""

from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path

import pytest
import yaml

from alignrepro.evals import leaderboard
from alignrepro.evals.leaderboard_stats import DEFAULT_RANK_BY, RANKABLE, rank_rows
from alignrepro.evals.verifiable.accuracy import wilson
from alignrepro.stats import bootstrap_mean_ci

REPO = Path(__file__).resolve().parents[1]
SEED = 7
JUDGE = "heuristic"


def _rate(k: int, n: int) -> dict:
    return {"value": 100 * k / n, "k": k, "n": n, "ci95": wilson(k, n)}


def write_model(
    root: Path,
    key: str,
    *,
    mmlu: tuple[int, int] | None = (2, 4),
    ratings: list[tuple[int, float | None]] | None = ((1, 4.0), (1, 6.0), (2, 3.0), (2, 5.0)),
    helpfulness: tuple[float, ...] = (2.0, 5.0, 7.0),
    over: tuple[int, int] = (1, 4),
    jailbreak: tuple[int, int] = (3, 4),
    outputs: tuple[str, ...] = ("one two three", "four five"),
    win_rate: float = 50.0,
) -> None:
    scores = root / "scores" / key
    scores.mkdir(parents=True)
    ae = {"win_rate": win_rate, "ci95": [win_rate - 10, win_rate + 10], "n_total": 4, "n_failed": 0,
          "judge_ids": ["heuristic-v1"], "heuristic": True}  # fmt: skip
    valid = [(t, r) for t, r in (ratings or []) if r is not None]
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    mt = {
        "score": mean([r for _, r in valid]),
        "turns": {str(t): {"score": mean([r for tt, r in valid if tt == t])} for t in (1, 2)},
        "n": len(valid), "n_failed": 0, "judge_id": "heuristic-v1", "heuristic": True,
    }  # fmt: skip
    if ratings is not None:
        mt["annotations"] = [{"question_id": i, "turn": t, "rating": r} for i, (t, r) in enumerate(ratings)]
    tasks = {"arc_challenge": {"status": "not available offline"}}
    tasks["mmlu"] = (
        {"status": "not available offline"}
        if mmlu is None
        else {"acc": mmlu[0] / mmlu[1], "n": mmlu[1], "label": f"MMLU (stratified {mmlu[1]} of 14,042, 0-shot)"}
    )
    safety = {
        "sets": {
            "harmful": {"metrics": {
                "harmless_rate_strmatch_xstest": _rate(2, 4), "harmless_rate_judge": _rate(1, 4),
                "harm_help_judge": {"mean": mean(list(helpfulness)), "n": len(helpfulness), "ci95": None},
            }},
            "benign": {"metrics": {"over_refusal_rate_xstest": _rate(*over)}},
            "jailbreak": {"metrics": {"harmless_rate_strmatch_xstest": _rate(*jailbreak) | {"ci95": None}}},
        },
        "judge": {"id": "heuristic-v1"}, "heuristic": True,
        "annotations": [{"id": f"h{i}", "eval_set": "harmful", "helpfulness": h} for i, h in enumerate(helpfulness)]
        + [{"id": "b0", "eval_set": "benign", "helpfulness": 10.0}],  # another set: not Harm-Help
    }  # fmt: skip
    for bench, data in {"alpacaeval": ae, "mtbench": mt, "lmeval": {"tasks": tasks}, "safety": safety}.items():
        (scores / f"{bench}.json").write_text(json.dumps(data))
    answers = root / "answers" / key
    answers.mkdir(parents=True)
    rows = [{"id": f"a{i}", "instruction": "q", "output": o} for i, o in enumerate(outputs)]
    (answers / "alpacaeval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def run_board(tmp_path: Path, models: dict[str, dict], rank_by: str | None = None) -> tuple[list[dict], str, str]:
    root, judges = tmp_path / "evals", tmp_path / "judges"
    judges.mkdir(parents=True, exist_ok=True)
    card = {
        "judge_id": "heuristic-v1",
        "heuristic": True,
        "pairwise": {"agreement": 52.0, "ci95": [40.0, 60.0], "n": 120},
    }
    (judges / f"{JUDGE}.json").write_text(json.dumps(card))
    for key, kw in models.items():
        write_model(root, key, **kw)
    spec = {"tier": "ci", "root": str(root), "benches": ["alpacaeval", "mtbench", "lmeval", "safety"],
            "models": {k: {"paper": k.split("/")[0], "method": k.split("/")[1], "base": "b"} for k in models},
            "judge": JUDGE, "cards": [JUDGE], "seed": SEED}  # fmt: skip
    if rank_by is not None:
        spec["rank_by"] = rank_by
    leaderboard.main(["--spec-json", json.dumps(spec), "--out-dir", str(root), "--judges-dir", str(judges)])
    rows = list(csv.DictReader((root / "leaderboard.csv").open(encoding="utf-8")))
    return rows, (root / "leaderboard.md").read_text(encoding="utf-8"), (root / "summary.md").read_text("utf-8")


def md_rows(md: str) -> list[list[str]]:
    """The cells of a Markdown table: the header, then the body (the |---| line is left out)."""
    lines = [ln for ln in md.splitlines() if ln.startswith("| ")]
    return [[c.strip() for c in ln.strip("|").split(" | ")] for ln in lines]


def test_ranked_by_the_default_column_with_ties_shared_and_missing_last(tmp_path):
    assert DEFAULT_RANK_BY == "mmlu_acc" and RANKABLE[DEFAULT_RANK_BY][1]  # judge-free, higher first
    mmlu = {"cut/a": (2, 4), "cut/b": (3, 4), "base/z": (2, 4), "cut/c": None, "mote/d": (1, 4)}
    rows, md, _ = run_board(tmp_path, {k: {"mmlu": v} for k, v in mmlu.items()})
    assert [r["model"] for r in rows] == ["cut/b", "base/z", "cut/a", "mote/d", "cut/c"]
    assert [r["rank"] for r in rows] == ["1", "2", "2", "4", ""]  # a tie shares its rank; missing: unranked, last
    assert {r["rank_by"] for r in rows} == {"mmlu_acc"}
    assert "Ranked by **MMLU acc %** (`evals.leaderboard.rank_by: mmlu_acc`), higher is better" in md
    table = md_rows(md)
    # the column names the scored set, its size and shots (the score files' label)
    head = "MMLU (stratified 4 of 14,042, 0-shot) acc % (ranking column, higher first)"
    assert table[0][0] == "rank" and head in table[0]
    assert [(r[0], r[1].split(" ")[0]) for r in table[1:]] == [(r["rank"] or "–", r["model"]) for r in rows]
    # the columns test_pipeline_ci reads are still there
    for col in ("model", "alpacaeval_win_rate", "mtbench_score", "mmlu_acc", "harmless_strmatch", "over_refusal"):
        assert col in rows[0]
    assert rows[0]["heuristic"] == "True" and rows[0]["tier"] == "ci"


def test_rank_by_picks_the_column_and_its_direction(tmp_path):
    over = {"cut/a": (3, 4), "cut/b": (0, 4), "cut/c": (1, 4)}
    rows, md, summary = run_board(tmp_path, {k: {"over": v} for k, v in over.items()}, rank_by="over_refusal")
    assert [r["model"] for r in rows] == sorted(over, key=lambda k: over[k][0])  # lower over-refusal first
    assert "lower is better" in md and "over-refusal % (string-match) (ranking column, lower first)" in md
    assert "ranked by over-refusal % (string-match) (evals.leaderboard.rank_by: over_refusal), lower first" in summary


def test_ranking_is_deterministic_whatever_the_input_order():
    rows = [{"model": f"m{i}", "x": v} for i, v in enumerate([None, 1.0, 3.0, 1.0, float("nan"), 2.0])]
    rows = [r | {"mmlu_acc": r.pop("x")} for r in rows]
    want = rank_rows(rows, "mmlu_acc")
    for seed in range(5):
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        assert rank_rows(shuffled, "mmlu_acc") == want
    assert [(r["model"], r["rank"]) for r in want] == [
        ("m2", 1), ("m5", 2), ("m1", 3), ("m3", 3), ("m0", None), ("m4", None)
    ]  # fmt: skip
    with pytest.raises(ValueError, match="not a rankable column"):
        rank_rows(rows, "avg_words")


def test_every_numeric_column_has_a_ci_from_the_per_item_data(tmp_path):
    ratings = [(1, 4.0), (1, 8.0), (1, None), (2, 2.0), (2, 3.0), (2, 9.0)]  # None: an unparsable judgment
    helpfulness = (1.0, 4.0, 9.0, 10.0)
    rows, md, _ = run_board(tmp_path, {"cut/a": {"ratings": ratings, "helpfulness": helpfulness, "jailbreak": (1, 3)}})
    (r,) = rows
    ci = lambda col: json.loads(r[col])  # noqa: E731
    valid = [(t, v) for t, v in ratings if v is not None]
    assert ci("mtbench_score_ci95") == bootstrap_mean_ci([v for _, v in valid], seed=SEED)
    assert ci("mtbench_turn1_ci95") == bootstrap_mean_ci([v for t, v in valid if t == 1], seed=SEED)
    assert ci("mtbench_turn2_ci95") == bootstrap_mean_ci([v for t, v in valid if t == 2], seed=SEED)
    assert ci("harm_help_ci95") == bootstrap_mean_ci(list(helpfulness), seed=SEED)  # harmful set only
    assert ci("jailbreak_harmless_strmatch_ci95") == wilson(1, 3)  # the file had none: Wilson from k of n
    assert ci("mmlu_ci95") == wilson(2, 4) and ci("over_refusal_ci95") == wilson(1, 4)
    assert json.loads(r["no_ci"]) == {}
    table = md_rows(md)
    header, cells = table[0], dict(zip(table[0], table[1], strict=True))
    numeric = [h for h in header if h not in ("rank", "model", "paper")]
    assert len(numeric) == 10
    for h in numeric:  # every numeric cell shows its interval in brackets (MT-Bench turns: both)
        assert cells[h].count("[") == (2 if h == "MT-Bench turn 1 / 2" else 1), (h, cells[h])
    lo, hi = ci("mtbench_score_ci95")
    assert f"{float(r['mtbench_score']):.2f} [{lo:.2f}, {hi:.2f}]" in cells[header[4]]


def test_a_column_without_per_item_data_says_why_instead_of_a_ci(tmp_path):
    rows, md, _ = run_board(tmp_path, {"cut/a": {"ratings": None}, "cut/b": {"ratings": [(1, 5.0), (2, 6.0)]}})
    by = {r["model"]: r for r in rows}
    assert by["cut/a"]["mtbench_score_ci95"] == "" and by["cut/b"]["mtbench_score_ci95"] != ""
    # no annotations: no values either, so nothing to explain; one rating per turn: the turns have no interval
    assert json.loads(by["cut/b"]["no_ci"]) == {"mtbench_turn1": "n=1 item", "mtbench_turn2": "n=1 item"}
    assert "5.00 (no CI: n=1 item) / 6.00 (no CI: n=1 item)" in md
    rows, md, _ = run_board(tmp_path / "x", {"cut/a": {"ratings": None}})
    assert "(no CI:" not in md  # n/a everywhere in MT-Bench: nothing claimed
    # a score file with values but no per-item annotations
    root = tmp_path / "x" / "evals"
    mt = json.loads((root / "scores/cut/a/mtbench.json").read_text())
    (root / "scores/cut/a/mtbench.json").write_text(json.dumps(mt | {"score": 5.5}))
    spec = {"tier": "ci", "root": str(root), "benches": ["alpacaeval", "mtbench", "lmeval", "safety"],
            "models": {"cut/a": {"paper": "cut", "method": "a", "base": "b"}}, "judge": JUDGE,
            "cards": [JUDGE]}  # fmt: skip
    args = ["--spec-json", json.dumps(spec), "--out-dir", str(root), "--judges-dir", str(tmp_path / "x" / "judges")]
    leaderboard.main(args)
    assert "5.50 (no CI: no per-item values in the score file)" in (root / "leaderboard.md").read_text()


def test_average_answer_length_in_words(tmp_path):
    outputs = {"cut/a": ("one two three", "", "four  five\nsix seven"), "cut/b": ("a b", "c d")}
    rows, md, summary = run_board(tmp_path, {k: {"outputs": v} for k, v in outputs.items()})
    for r in rows:
        words = [len(o.split()) for o in outputs[r["model"]]]
        assert float(r["avg_words"]) == pytest.approx(sum(words) / len(words))
        assert int(r["n_answers"]) == len(words)
        assert json.loads(r["avg_words_ci95"]) == bootstrap_mean_ci(words, seed=SEED)
    assert "avg words / AlpacaEval answer" in md and "whitespace-separated words" in md
    assert "| 2.0 (no CI" not in md and re.search(r"\| 2\.3 \[[\d.]+, [\d.]+\] \|", md)  # cut/a: 7 words / 3
    assert "avg words" in summary


def test_the_rule_gives_the_answers_and_the_ranking_column_to_the_leaderboard():
    text = (REPO / "evals/shared.smk").read_text()
    rule = text[text.index("rule evals_leaderboard:") :]
    assert 'f"{EV_R}/answers/{key}/alpacaeval.jsonl" for key in SHARED_MODELS' in rule
    assert '"rank_by": EV["leaderboard"]["rank_by"]' in rule


def test_summary_shows_the_ranked_top_rows_the_ranking_column_and_the_judge(tmp_path):
    mmlu = {f"cut/m{i}": (i, 8) for i in range(7)}
    rows, _, summary = run_board(tmp_path, {k: {"mmlu": v} for k, v in mmlu.items()})
    label = "MMLU (stratified 8 of 14,042, 0-shot) acc %"
    assert f"ranked by {label} (evals.leaderboard.rank_by: mmlu_acc), higher first" in summary
    table = md_rows(summary)
    assert table[0][:3] == ["rank", "model", f"{label} (95 % CI)"]
    assert [(c[0], c[1].split(" ")[0]) for c in table[1:]] == [(r["rank"], r["model"]) for r in rows[:5]]
    assert "... 2 more in leaderboard.md" in summary
    assert "judge **heuristic** (`heuristic-v1`): pairwise agreement 52.0 [40.0, 60.0] %" in summary
    lo, hi = wilson(6, 8)
    assert f"75.0 [{lo:.1f}, {hi:.1f}]" in table[1][2]  # the top row's ranking value with its interval


def test_config_key_is_in_the_defaults_and_the_schema_with_the_same_columns():
    defaults = yaml.safe_load((REPO / "config/defaults.yaml").read_text())
    assert defaults["evals"]["leaderboard"]["rank_by"] == DEFAULT_RANK_BY
    schema = yaml.safe_load((REPO / "config/schema.yaml").read_text())["properties"]["evals"]
    node = schema["properties"]["leaderboard"]
    assert node["additionalProperties"] is False and "leaderboard" in schema["required"]
    assert node["properties"]["rank_by"]["enum"] == list(RANKABLE)
    assert node["properties"]["rank_by"]["description"]
