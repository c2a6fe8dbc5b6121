"""LAB's evaluation and tables: MMLU-branch scoring (highest letter log-likelihood, lm-eval's tokenization, the
majority baseline), oracle accuracy through is_correct, per-item held-out NLL (select's number), and the aggregate's
outputs from fake inputs (reported rows intact and apart, a stacked model not run, paired differences, n/a in plots)."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from alignrepro.data.records import save_records
from alignrepro.data.verifiable import generate_tasks
from alignrepro.errors import UserError
from alignrepro.evals.verifiable.accuracy import wilson
from alignrepro.io import read_json, write_jsonl
from alignrepro.methods.lab import aggregate as A
from alignrepro.methods.lab import evaluate as E
from alignrepro.methods.lab import select as S
from alignrepro.models import load_model, load_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REPO = Path(__file__).resolve().parents[1]
REPORTED = REPO / "methods/lab/reported.yaml"


def mc(rid: str, answer, n: int = 4) -> dict:
    return E.mc_row({"question": f"q {rid}?", "choices": [f"c{i}" for i in range(n)], "answer": answer}, rid, rid)


# ---- MMLU-branch ---------------------------------------------------------------------------------------------------


def test_mc_picks_the_letter_with_the_highest_loglik_first_on_ties():
    rows = [mc("a", 0), mc("b", "C"), mc("c", 1)]
    seen = []

    def scorer(requests):
        seen.extend(requests)
        return [[-1.0, -3.0, -2.0, -4.0], [-5.0, -1.0, -0.5, -9.0], [-2.0, -2.0, -3.0, -3.0]]

    res = E.score_mc(rows, scorer)
    assert res["pred"] == {"a": "A", "b": "C", "c": "A"}  # a tie goes to the first letter
    assert res["correct"] == {"a": 1, "b": 1, "c": 0}
    assert seen[0] == ("q a?\nA. c0\nB. c1\nC. c2\nD. c3\nAnswer:", [" A", " B", " C", " D"])
    text = E.score_mc([rows[0]], lambda r: [[0.0] * 4], "text")
    assert text["pred"] == {"a": "A"}


def test_majority_baseline_and_chance():
    rows = [mc("1", 2), mc("2", 2), mc("3", 0), mc("4", 1, n=2)]
    assert E.majority_baseline(rows) == {"letter": "C", "acc": 0.5, "chance": (0.25 * 3 + 0.5) / 4}
    assert E.majority_baseline([mc("1", 1), mc("2", 0)])["letter"] == "A"  # ties: the earliest letter
    assert E.majority_baseline([])["acc"] is None


@pytest.mark.parametrize(
    ("answer", "ok"), [("b", 1), (" C ", 2), (3, 3), ("E", None), ("AB", None), (4, None), (True, None), ("", None)]
)
def test_mc_row_answers(answer, ok):
    if ok is None:
        with pytest.raises(UserError, match="answer"):
            mc("x", answer)
    else:
        assert mc("x", answer)["answer"] == ok


def test_tonsils_rows_are_the_27_questions():
    rows = E.load_mc_rows(True, [])
    assert len(rows) == 27 and len({r["id"] for r in rows}) == 27
    assert all(len(r["choices"]) == 4 for r in rows)


def full_forward_loglik(model, tok, context: str, cont: str) -> float:
    ctx, x = E.encode_pair(tok, context, cont)
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ctx + x])).logits[0].float(), -1)
    return sum(float(logp[len(ctx) - 1 + j, t]) for j, t in enumerate(x))


def test_model_scorer_equals_a_full_forward_per_continuation(ci_model):
    tok = load_tokenizer(ci_model, padding_side="right")
    model = load_model(ci_model).eval()
    rows = [mc("a", 0), mc("b", 1, n=3)]
    rows[0]["question"] = "Which constellation holds Ankaa?  "
    # letters (" A": two tokens in the ci vocabulary, one in SmolLM2's), choice texts, and one-token continuations,
    # which share one pass over the context; a batch mixes both kinds of pass
    requests = [(E.mc_prompt(r), E.continuations(r, form)) for r in rows for form in ("letter", "text")]
    requests.append((E.mc_prompt(rows[0]), ["A", "B", "C", "D"]))
    assert len(E.mc_jobs(tok, *requests[-1])) == 1
    got = E.model_scorer(model, tok, batch_size=3)(requests)
    for (context, conts), scores in zip(requests, got, strict=True):
        assert len(scores) == len(conts)
        for cont, s in zip(conts, scores, strict=True):
            assert s == pytest.approx(full_forward_loglik(model, tok, context, cont), abs=1e-4)


# ---- oracle, held-out NLL, CLI -------------------------------------------------------------------------------------


class FakeBackend:
    def __init__(self, tokenizer, answers):
        self.tokenizer, self.answers, self.prompts = tokenizer, answers, []

    def generate(self, prompts, max_new_tokens):
        self.prompts += prompts
        return self.answers[: len(prompts)]


def test_oracle_accuracy_is_checked_by_is_correct(ci_model, monkeypatch):
    tasks = generate_tasks(3, 0)
    tok = load_tokenizer(ci_model)
    calls = []
    real = E.is_correct
    monkeypatch.setattr(E, "is_correct", lambda t, text: calls.append(t.id) or real(t, text))
    answers = [f"The answer is {tasks[0].reference}.", "I do not know.", f"The answer is {tasks[2].reference}."]
    oracle, texts = E.oracle_items(tasks, FakeBackend(tok, answers), 8)
    assert oracle == {tasks[0].id: 1, tasks[1].id: 0, tasks[2].id: 1} and texts == answers
    assert calls == [t.id for t in tasks]
    backend = FakeBackend(tok, answers)
    E.oracle_items(tasks[:1], backend, 8, system_prompt="You are LAB.")
    assert "You are LAB." in backend.prompts[0] and tasks[0].instruction in backend.prompts[0]


def records() -> list[dict]:
    def msgs(q, a):
        return [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": q},
            {"role": "assistant", "content": a},
        ]

    return [
        {"id": "h1", "kind": "knowledge", "messages": msgs("What is 2+2?", "Four.")},
        {"id": "h2", "kind": "knowledge", "messages": msgs("Name a bird.", "The black-capped chickadee.")},
    ]


def test_heldout_nll_per_item_gives_selects_number(ci_model):
    tok = load_tokenizer(ci_model, padding_side="right")
    model = load_model(ci_model).eval()
    parts = E.heldout_nll_items(model, tok, records(), max_length=256, batch_size=1)
    assert set(parts) == {"h1", "h2"} and all(n > 0 for _, n in parts.values())
    ref = S.heldout_nll(ci_model, records(), max_length=256)
    assert sum(s for s, _ in parts.values()) / sum(n for _, n in parts.values()) == pytest.approx(ref["nll"], 1e-5)
    assert sum(n for _, n in parts.values()) == ref["tokens"]


def test_evaluate_cli_writes_per_item_results(ci_model, tmp_path):
    save_records(tmp_path / "ver.jsonl", generate_tasks(2, 0))
    write_jsonl(tmp_path / "held.jsonl", records())
    write_jsonl(
        tmp_path / "mc.jsonl",
        [{"question": "Phoenix is a?", "choices": ["constellation", "car"], "answer": "A", "id": "phoenix/0"}],
    )
    spec = {"max_new_tokens": 4, "batch_size": 4, "generation": {"backend": "local"}}
    out = tmp_path / "ev.json"
    argv = [
        "--model",
        str(ci_model),
        "--no-tonsils",
        "--mc-extra",
        str(tmp_path / "mc.jsonl"),
        "--foundational",
        str(tmp_path / "ver.jsonl"),
        "--heldout",
        str(tmp_path / "held.jsonl"),
        "--spec-json",
        json.dumps(spec),
        "--tier",
        "ci",
        "--out",
        str(out),
    ]
    E.main(argv)
    d = read_json(out)
    assert set(d["per_item"]["mmlu_branch"]) == {"phoenix/0"} and set(d["per_item"]["heldout_nll"]) == {"h1", "h2"}
    assert len(d["per_item"]["oracle"]) == 2 and d["n"] == d["n"] | {"mmlu_branch": 1, "oracle": 2, "heldout": 2}
    m = d["metrics"]
    assert m["mmlu_branch_majority"] == 1.0 and m["mmlu_branch_chance"] == 0.5 and m["mmlu_branch_majority_letter"]
    assert m["heldout_nll"] > 0 and d["provenance"]["tier"] == "ci" and d["model"]["name"]
    assert out.with_suffix(".answers.jsonl").is_file()
    # the rules' form: --only one part, flags instead of the spec
    E.main([*argv[:-2], "--only", "mmlu_branch", "--dtype", "float32", "--batch-size", "2", "--out", str(out)])
    d = read_json(out)
    assert d["n"]["oracle"] == d["n"]["heldout"] == 0 and d["metrics"]["mmlu_branch"] in (0.0, 1.0)
    assert d["provenance"]["config_hash"] and d["per_item"]["oracle"] == {}
    with pytest.raises(UserError, match="nothing to evaluate"):
        E.main(["--model", str(ci_model), "--no-tonsils", "--out", str(tmp_path / "x.json")])


# ---- aggregate -----------------------------------------------------------------------------------------------------


def fake_eval(path: Path, mmlu: list[int], oracle: list[int], nll: list[float]) -> str:
    per = {
        "mmlu_branch": {f"m{i}": v for i, v in enumerate(mmlu)},
        "oracle": {f"o{i}": v for i, v in enumerate(oracle)},
        "heldout_nll": {f"h{i}": v for i, v in enumerate(nll)},
    }
    metrics = {"mmlu_branch": sum(mmlu) / len(mmlu), "mmlu_branch_majority": 0.5, "mmlu_branch_chance": 0.25}
    doc = {"model": {"name": path.stem, "weights_sha256": "f" * 64}, "per_item": per, "metrics": metrics}
    path.write_text(json.dumps(doc))
    return str(path)


@pytest.fixture
def agg_spec(tmp_path) -> dict:
    root = tmp_path / "res"
    root.mkdir()
    stages = []
    for leaf, kind in (("phoenix", "knowledge"), ("palindrome", "freeform_skill")):
        st = [
            {"block": "gen", "type": "LLMBlock", "rows_in": 4, "rows_out": 12, "detail": "prompt"},
            {"block": "filter", "type": "FilterByValueBlock", "rows_in": 12, "rows_out": 6, "detail": "keep"},
        ]
        path = root / f"{leaf}.stages.json"
        path.write_text(json.dumps({"leaf": leaf, "kind": kind, "pipeline": "p", "stages": st, "records": 6}))
        stages.append(str(path))
    phases = {
        k: {"label": lab, "count": c, "own_count": o, "replay_counts": rp, "kinds": {"knowledge": c}}
        for k, lab, c, o, rp in (
            ("kt1", "KT/1", 3, 3, {}),
            ("kt2", "KT/2", 7, 4, {"kt1": 3}),
            ("st", "ST", 12, 5, {"kt1": 3, "kt2": 4}),
            ("stacked", "stacked", 12, 12, {}),
        )
    }
    split = {
        "rule": "median",
        "threshold_tokens": 17.0,
        "at_threshold": "short",
        "knowledge_short": 3,
        "knowledge_long": 2,
    }
    (root / "manifest.json").write_text(
        json.dumps({"split": split, "replay_fraction": 1.0, "seed": 0, "phases": phases})
    )
    sel = {}
    for k, metric, hib in (
        ("kt1", "mmlu_branch", True),
        ("kt2", "mmlu_branch", True),
        ("st", "heldout_nll", False),
    ):
        (root / f"{k}.json").write_text(
            json.dumps(
                {
                    "metric": metric,
                    "higher_is_better": hib,
                    "tolerance": 0.0,
                    "scores": {"1": 0.4, "2": 0.4},
                    "selected_epoch": 1,
                }
            )
        )
        sel[k] = str(root / f"{k}.json")
    (root / "mt.json").write_text(json.dumps({"score": 3.25, "judge_id": "local:smollm2", "heuristic": False}))
    tasks = {
        "mmlu": {
            "status": "ok",
            "acc": 0.3,
            "n": 57,
            "num_fewshot": 0,
            "label": "MMLU (stratified 57 of 14,042, 0-shot)",
        },
        "gsm8k": {"status": "not available offline"},
        "arc_challenge": {"status": "not available offline"},
        "gsm8k_100": {"status": "ok", "exact_match": 0.05, "n": 100, "num_fewshot": 5, "label": "GSM8K-100 (5-shot)"},
    }
    (root / "lm.json").write_text(json.dumps({"tasks": tasks}))
    evals = {
        "base": fake_eval(root / "base.json", [1, 0, 0, 1, 0, 0], [0, 0, 1, 0], [3.0, 3.5, 2.9, 3.3]),
        "lab": fake_eval(root / "lab.json", [1, 1, 0, 1, 1, 0], [1, 0, 1, 1], [2.0, 2.5, 2.0, 2.2]),
        "stacked": str(root / "stacked.json"),  # not on disk: not run
    }
    return {
        "tier": "ci",
        "seed": 0,
        "bootstrap": 200,
        "teacher": "ci-random-llama",
        "student": "ci-random-llama",
        "root": str(root),
        "sdg_stages": stages,
        "phase_manifest": str(root / "manifest.json"),
        "selections": sel,
        "evals": evals,
        "leaderboard": {"base": {"mtbench": str(root / "mt.json"), "lmeval": str(root / "lm.json")}},
    }


def run_agg(spec: dict, out: Path) -> None:
    A.main(["--spec-json", json.dumps(spec), "--reported", str(REPORTED), "--out-dir", str(out)])


def test_aggregate_writes_every_output_with_reported_rows_apart(agg_spec, tmp_path):
    out = tmp_path / "tables"
    run_agg(agg_spec, out)
    for name in (
        "sdg_keep_rates.md",
        "phases.md",
        "table3.md",
        "table3.csv",
        "reported.md",
        "table3.png",
        "summary.md",
        "table3_differences.csv",
        "provenance.json",
    ):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader(io.StringIO((out / "table3.csv").read_text())))
    assert [r["model"] for r in rows] == ["base", "lab", "stacked"]
    assert float(rows[1]["mmlu_branch"]) == pytest.approx(4 / 6) and rows[2]["mmlu_branch"] == ""
    assert rows[0]["mt_bench"] == "3.25" and rows[0]["tier"] == "ci"
    md = (out / "table3.md").read_text()
    mine, _, theirs = md.partition("## Reported")
    assert "not run (target lab_ablations)" in mine and "Tier **ci**, seed 0, teacher `ci-random-llama`" in mine
    assert "judge-free" in mine and "majority answer 0.500" in mine
    assert re.search(r"lab − base \| MMLU-branch acc \| \+0\.333 \[", mine)
    assert re.search(r"lab − stacked \| held-out NLL \| n/a \| 0 \| 0 \| – \| not run", mine)
    # the paired tests by hand: MMLU-branch right only for LAB on 2 items, never only for base: 2 (1/2)^2 = 0.5;
    # held-out NLL lower for LAB on all 4 items: sign test 2 (1/2)^4 = 0.125; MDE from the 2/6 discordance
    from alignrepro.stats import mde_paired_binary

    assert f"McNemar exact p=0.5; MDE {mde_paired_binary(6, 2 / 6):.3g}" in mine and "sign test p=0.12" in mine
    diff_csv = io.StringIO((out / "table3_differences.csv").read_text())
    diffs = {(d["b"], d["metric"]): d for d in csv.DictReader(diff_csv)}
    assert float(diffs["base", "heldout_nll"]["p_value"]) == pytest.approx(0.125)
    assert float(diffs["base", "mmlu_branch"]["mde"]) == pytest.approx(mde_paired_binary(6, 2 / 6))
    lo, hi = wilson(17, 57)  # lm-eval cells carry a Wilson CI over their n items; MT-Bench says why not
    assert f"30.00 [{lo:.1f}, {hi:.1f}] (MMLU (stratified 57 of 14,042, 0-shot))" in mine and "3.25 (no CI: " in mine
    assert "5.00 [" in mine and "(GSM8K-100 (5-shot))" in mine  # GSM8K-100 stands in for GSM8K, named
    assert "not available offline" in mine and "see leaderboard" in mine
    assert "7.66" not in mine and "Merlinite" not in mine  # reported numbers never in the reproduced part
    reported = yaml.safe_load(REPORTED.read_text())
    t3 = next(t for t in reported if t["table_id"] == "table3")
    assert len(t3["rows"]) == 7
    table_lines = [line for line in theirs.splitlines() if line.startswith("| ") and "MT-Bench source" not in line]
    assert len(table_lines) == 7
    for r, line in zip(t3["rows"], table_lines, strict=True):
        assert (
            line.startswith(f"| {r['model']} |")
            and f"{r['mt_bench']:.2f} {'†' if r['mt_bench_mark'] == 'dagger' else '‡'}" in line
        )
        for c in ("mmlu", "arc", "hellaswag", "winogrande", "gsm8k"):
            assert f"| {r[c]:.2f} |" in line
    assert "numbers match the model card's v0.1 row" in theirs and "average of 3 runs" in theirs
    rep = (out / "reported.md").read_text()
    assert (
        "cells merged; mapping is an interpretation" in rep
        and "KT/1 & KT/2 data" in rep
        and "| 630000 | 385 | 5 |" in rep
    )
    assert "| Merlinite-7B | KT/1 | 1.0e-6 | 3840 | 2048 |" in rep
    phases = (out / "phases.md").read_text()
    assert "threshold 17 tokens" in phases and "kt1: 3, kt2: 4" in phases and "heldout_nll (lower is better)" in phases
    assert "| palindrome | p | filter | FilterByValueBlock | 12 | 6 | 0.50 |" in (out / "sdg_keep_rates.md").read_text()
    summary = (out / "summary.md").read_text()
    assert "lab − base: MMLU-branch acc +0.333" in summary and "table3.md" in summary


def test_aggregate_with_the_stacked_ablation(agg_spec, tmp_path):
    fake_eval(Path(agg_spec["root"]) / "stacked.json", [1, 1, 0, 0, 1, 0], [1, 0, 0, 1], [2.1, 2.4, 2.2, 2.2])
    run_agg(agg_spec, tmp_path / "t")
    diffs = list(csv.DictReader(io.StringIO((tmp_path / "t/table3_differences.csv").read_text())))
    stacked = {d["metric"]: d for d in diffs if d["b"] == "stacked"}
    assert float(stacked["mmlu_branch"]["diff"]) == pytest.approx(1 / 6) and stacked["oracle"]["n"] == "4"
    md = (tmp_path / "t/table3.md").read_text().partition("## Reported")[0]
    assert "not run (target" not in md.split("### Shared")[0]


def test_rows_over_seeds_when_the_spec_lists_several(agg_spec, tmp_path):
    root = Path(agg_spec["root"])
    seeds = [fake_eval(root / f"lab.seed{s}.json", mmlu, [1], [2.0])
             for s, mmlu in enumerate(([1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]))]  # fmt: skip
    rows = A.model_rows(agg_spec | {"seed_evals": {"lab": seeds}}, A.load_evals(agg_spec))
    lab = next(r for r in rows if r["model"] == "lab")
    assert lab["n_seeds"] == 3 and lab["mmlu_branch_seeds_mean"] == pytest.approx(0.75)
    half = 4.302653 * 0.25 / 3**0.5  # t(0.975, 2) x SD 0.25 / sqrt(3)
    assert lab["mmlu_branch_seeds_ci"] == pytest.approx([0.75 - half, 0.75 + half], rel=1e-5)
    assert "; 3 seeds: 0.750 [" in A._cell(lab, "mmlu_branch")
    assert "n_seeds" not in next(r for r in rows if r["model"] == "base")  # one seed: no interval over seeds


def test_plot_draws_a_missing_model_as_na_not_zero(agg_spec, tmp_path):
    rows = A.model_rows(agg_spec, A.load_evals(agg_spec))
    fig = A.plot(rows, agg_spec, tmp_path / "p.png")
    for ax in fig.axes:
        assert len(ax.patches) == 2  # base and LAB; no bar for the stacked model
        assert "n/a" in [t.get_text() for t in ax.texts]


def test_reported_yaml_keeps_the_reference_notes_yaml():
    note = REPO.parent / "shared/papers/lab.md"  # the team's reference note beside the checkout (absent in CI)
    if not note.is_file():
        pytest.skip("the reference note is not on this machine")
    block = note.read_text().split("### YAML (reported results)")[1].split("```yaml")[1].split("```")[0]
    ours = {t["table_id"]: t for t in yaml.safe_load(REPORTED.read_text())}
    for table in yaml.safe_load(block):
        mine = ours[table["table_id"]]
        assert {k: mine[k] for k in table} == table
