"""MT-Bench grading with FastChat llm_judge's prompts: single-answer scores (1-10) or pairwise against a baseline.

Prompt choice follows FastChat: math, reasoning and coding questions are judged against GPT-4's reference answers
with the `*-math-v1*` prompts, other categories with `single-v1` / `pair-v2`; turn 2 uses the `-multi-turn` prompts,
which show the whole conversation. A question that needs a reference but has none is skipped and counted.

Single mode: means over the parsable ratings; a judge answer without `[[rating]]` is NaN, counted in n_failed and
never scored as 0. Pairwise mode: the baseline is answer A and the model answer B in the first order, then the
swap; both verdicts are averaged (`average_orders`), so preference 2.0 = the model wins and win rate =
mean(preference - 1) x 100 (a tie counts one half). Either order unparsable = NaN = n_failed.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alignrepro.errors import UserError
from alignrepro.evals.alpacaeval.winrate import load_judge_config
from alignrepro.evals.mtbench.data import JudgePrompt, MTBenchData, load_mtbench
from alignrepro.io import DataError, atomic_write_json, read_jsonl, sha256_file, write_jsonl
from alignrepro.judges import JudgeSpec, make_judge
from alignrepro.judges.base import Judgment
from alignrepro.judges.grading import Messages, average_orders, cached_grade_judgments
from alignrepro.provenance import provenance

log = logging.getLogger(__name__)
ANSWERS_FORMAT = "the answers JSONL of `alignrepro mtbench-answer` / `respond` (question_id, category, turns, answers)"
NEED_REF_CATEGORIES = frozenset({"math", "reasoning", "coding"})  # FastChat's NEED_REF_CATS
SCALE = (1, 10)
TURNS = (1, 2)


def prompt_name(mode: str, category: str, turn: int) -> str:
    """FastChat's judge prompt for a question: mode "single" or "pair"."""
    ref = category in NEED_REF_CATEGORIES
    base = {"single": "single-math-v1" if ref else "single-v1", "pair": "pair-math-v1" if ref else "pair-v2"}[mode]
    return base + ("-multi-turn" if turn == 2 else "")


def reference_fields(question: dict[str, Any], turn: int, references: dict[int, list[str]]) -> dict[str, str] | None:
    """ref_answer_1 (and ref_answer_2 for turn 2) where the category needs them; None when they are missing."""
    if question["category"] not in NEED_REF_CATEGORIES:
        return {}
    ref = references.get(int(question["question_id"]))
    if ref is None or len(ref) < turn:
        return None
    return {f"ref_answer_{i + 1}": ref[i] for i in range(turn)}


def _messages(prompt: JudgePrompt, fields: dict[str, str]) -> Messages:
    # str.format substitutes only the template's own fields: braces inside answers are left alone.
    return [
        {"role": "system", "content": prompt.system_prompt},
        {"role": "user", "content": prompt.prompt_template.format(**fields)},
    ]


def render_single(row: dict[str, Any], turn: int, data: MTBenchData) -> tuple[str, Messages] | None:
    """(prompt name, judge messages) grading `turn` of an answers row; None when a needed reference is missing."""
    refs = reference_fields(row, turn, data.references)
    if refs is None:
        return None
    name = prompt_name("single", row["category"], turn)
    q, a = row["turns"], row["answers"]
    if turn == 1:
        fields = {"question": q[0], "answer": a[0]}
    else:
        fields = {"question_1": q[0], "answer_1": a[0], "question_2": q[1], "answer_2": a[1]}
    return name, _messages(data.prompts[name], fields | refs)


def render_pair(
    question: dict[str, Any], answers_a: list[str], answers_b: list[str], turn: int, data: MTBenchData
) -> tuple[str, Messages] | None:
    """(prompt name, judge messages) comparing two answer pairs on `turn` (A shown first)."""
    refs = reference_fields(question, turn, data.references)
    if refs is None:
        return None
    name = prompt_name("pair", question["category"], turn)
    q = question["turns"]
    if turn == 1:
        fields = {"question": q[0], "answer_a": answers_a[0], "answer_b": answers_b[0]}
    else:
        fields = {
            "question_1": q[0],
            "question_2": q[1],
            "answer_a_1": answers_a[0],
            "answer_a_2": answers_a[1],
            "answer_b_1": answers_b[0],
            "answer_b_2": answers_b[1],
        }
    return name, _messages(data.prompts[name], fields | refs)


def check_rows(rows: list[dict[str, Any]], what: str) -> dict[int, dict[str, Any]]:
    """Rows by question id, after checking each has two turns and two answers and appears once."""
    out: dict[int, dict[str, Any]] = {}
    for i, r in enumerate(rows, 1):
        if not isinstance(r, dict) or not isinstance(r.get("question_id"), int | str) or "category" not in r:
            raise DataError(f"{what}: row {i} has no question_id and category; expected {ANSWERS_FORMAT}")
        qid = int(r["question_id"])
        if qid in out:
            raise DataError(f"{what}: question {qid} appears twice")
        if len(r.get("turns", [])) != 2 or len(r.get("answers", [])) != 2:
            raise DataError(f"{what}: question {qid} needs two turns and two answers; expected {ANSWERS_FORMAT}")
        out[qid] = r
    return out


def _num(x: float) -> float | None:
    return None if math.isnan(x) else x  # NaN is not JSON


def _mean_or_none(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def summarize_ratings(ratings: list[float]) -> dict[str, Any]:
    valid = [r for r in ratings if not math.isnan(r)]
    return {"score": _mean_or_none(valid), "n": len(valid), "n_failed": len(ratings) - len(valid)}


def summarize_preferences(prefs: list[float]) -> dict[str, Any]:
    """Win/tie/loss for the model (preference > 1.5 / = 1.5 / < 1.5) and the win rate with ties = 1/2."""
    valid = [p for p in prefs if not math.isnan(p)]
    rate = _mean_or_none([p - 1.0 for p in valid])
    return {
        "win_rate": None if rate is None else 100.0 * rate,
        "win": sum(p > 1.5 for p in valid),
        "tie": sum(p == 1.5 for p in valid),
        "loss": sum(p < 1.5 for p in valid),
        "n": len(valid),
        "n_failed": len(prefs) - len(valid),
    }


def _breakdown(
    keys: list[tuple[int, str]], values: list[float], summarize: Callable[[list[float]], dict[str, Any]]
) -> dict[str, Any]:
    """Overall, per-turn and per-category summaries of values keyed by (turn, category)."""
    by_turn: dict[str, list[float]] = defaultdict(list)
    by_cat: dict[str, list[float]] = defaultdict(list)
    for (turn, cat), v in zip(keys, values, strict=True):
        by_turn[str(turn)].append(v)
        by_cat[cat].append(v)
    return summarize(values) | {
        "turns": {t: summarize(v) for t, v in sorted(by_turn.items())},
        "categories": {c: summarize(v) for c, v in sorted(by_cat.items())},
    }


def _judge_info(judge: Any, data: MTBenchData, used: set[str]) -> dict[str, Any]:
    heuristic = bool(getattr(judge, "heuristic", False))
    info: dict[str, Any] = {
        "judge_id": judge.id,
        "heuristic": heuristic,
        "prompt_hashes": {name: data.prompts[name].sha256 for name in sorted(used)},
        "data": data.provenance,
    }
    if heuristic:
        info["warning"] = "heuristic judge (ci tier): every number in this file is meaningless"
    return info


def _graded(judge: Any, kind: str, prompts: list[Messages], cache: Any | None) -> tuple[list[Judgment], dict[str, int]]:
    """cached_grade_judgments plus the cache hits/misses of this call (a cache's counters run over its whole life)."""
    h0, m0 = (cache.hits, cache.misses) if cache is not None else (0, 0)
    out = cached_grade_judgments(judge, kind, prompts, cache, scale=SCALE)
    counts = {"hits": cache.hits - h0, "misses": cache.misses - m0} if cache is not None else {}
    return out, counts


def _checks(judgments: list[Judgment], where: list[dict[str, Any]], judge: Any) -> dict[str, Any]:
    """Unparsable (answer-token mass below the judge's threshold: NaN, never scored) and truncated judge prompts,
    with the (question, turn[, order]) each hit."""
    masses = [j.answer_mass for j in judgments if j.answer_mass is not None]
    return {
        "n_unparsable": sum(j.unparsable for j in judgments),
        "unparsable": [w for w, j in zip(where, judgments, strict=True) if j.unparsable],
        "n_truncated": sum(j.truncated for j in judgments),
        "truncated": [w for w, j in zip(where, judgments, strict=True) if j.truncated],
        "answer_mass_mean": sum(masses) / len(masses) if masses else None,
        "min_answer_mass": getattr(judge, "min_answer_mass", None),
    }


def _log_skipped(skipped: list[tuple[int, int]]) -> None:
    if skipped:
        log.warning("%d (question, turn) pairs skipped: no reference answer, e.g. %s", len(skipped), skipped[:5])


def grade_single(
    rows: list[dict[str, Any]], judge: Any, cache: Any | None = None, data: MTBenchData | None = None
) -> dict[str, Any]:
    """Single-answer grades of both turns of every answers row: overall, per turn and per category."""
    data = data or load_mtbench()
    by_id = check_rows(rows, "answers")
    keys, prompts, annotations, skipped, used = [], [], [], [], set()
    for qid, row in by_id.items():
        for turn in TURNS:
            rendered = render_single(row, turn, data)
            if rendered is None:
                skipped.append((qid, turn))
                continue
            name, messages = rendered
            used.add(name)
            keys.append((turn, row["category"]))
            prompts.append(messages)
            annotations.append({"question_id": qid, "category": row["category"], "turn": turn, "prompt": name})
    _log_skipped(skipped)
    graded, cache_counts = _graded(judge, "rate", prompts, cache)
    ratings = [j.value for j in graded]
    for a, j in zip(annotations, graded, strict=True):
        a |= {"rating": _num(j.value)} | j.to_dict()
    result = {"mode": "single", "scale": list(SCALE)} | _breakdown(keys, ratings, summarize_ratings)
    where = [{"question_id": a["question_id"], "turn": a["turn"]} for a in annotations]
    result["judge_checks"] = _checks(graded, where, judge)
    if result["n_failed"]:
        log.warning(
            "%d of %d judge answers had no parsable [[rating]] (left out of the means)",
            result["n_failed"],
            len(ratings),
        )
    log.info("MT-Bench score %s over %d graded turns (judge %s)", result["score"], result["n"], judge.id)
    result |= {"n_skipped_no_reference": len(skipped), "annotations": annotations, "cache": cache_counts}
    return result | _judge_info(judge, data, used)


def grade_pairwise(
    rows: list[dict[str, Any]],
    baseline_rows: list[dict[str, Any]],
    judge: Any,
    cache: Any | None = None,
    data: MTBenchData | None = None,
) -> dict[str, Any]:
    """Pairwise verdicts of every answers row against the baseline's answers to the same question, both orders."""
    data = data or load_mtbench()
    by_id, base = check_rows(rows, "answers"), check_rows(baseline_rows, "baseline")
    missing = sorted(set(by_id) - set(base))
    if missing:
        raise DataError(f"{len(missing)} question(s) have no baseline answers, e.g. {missing[:5]}")
    keys, first, swapped, annotations, skipped, used = [], [], [], [], [], set()
    for qid, row in by_id.items():
        if base[qid]["turns"] != row["turns"]:
            log.warning("question %d: the baseline's question text differs (judged on the model's)", qid)
        model, baseline = row["answers"], base[qid]["answers"]
        for turn in TURNS:
            rendered = render_pair(row, baseline, model, turn, data)  # the model is B: preference 2.0 = model wins
            if rendered is None:
                skipped.append((qid, turn))
                continue
            name, messages = rendered
            used.add(name)
            keys.append((turn, row["category"]))
            first.append(messages)
            swapped.append(render_pair(row, model, baseline, turn, data)[1])
            annotations.append({"question_id": qid, "category": row["category"], "turn": turn, "prompt": name})
    _log_skipped(skipped)
    # One call for both orders, so batching judges see them together.
    graded, cache_counts = _graded(judge, "choose", first + swapped, cache)
    verdicts = [j.value for j in graded]
    prefs = average_orders(verdicts[: len(first)], verdicts[len(first) :])
    where = [{"question_id": a["question_id"], "turn": a["turn"], "order": order}
             for order in ("model second", "model first") for a in annotations]  # fmt: skip
    for a, v1, v2, p in zip(annotations, verdicts[: len(first)], verdicts[len(first) :], prefs, strict=True):
        a |= {"verdict_model_second": _num(v1), "verdict_model_first": _num(v2), "preference": _num(p)}
    result = {"mode": "pairwise"} | _breakdown(keys, prefs, summarize_preferences)
    result["judge_checks"] = _checks(graded, where, judge)
    if result["n_failed"]:
        log.warning("%d of %d pairs had an unparsable verdict in either order", result["n_failed"], len(prefs))
    log.info("MT-Bench win rate %s over %d pairs (judge %s)", result["win_rate"], result["n"], judge.id)
    result |= {
        "n_skipped_no_reference": len(skipped),
        "baseline_generator": next(iter(base.values()), {}).get("generator"),
        "annotations": annotations,
        "cache": cache_counts,
    }
    return result | _judge_info(judge, data, used)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m alignrepro.evals.mtbench.grade", description=__doc__.splitlines()[0])
    ap.add_argument("--answers", type=Path, required=True, help="answers JSONL from alignrepro.evals.mtbench.answer")
    ap.add_argument("--judge-config", required=True, help="make_judge spec as JSON or a JSON/YAML path")
    ap.add_argument("--baseline", type=Path, default=None, help="baseline answers JSONL: pairwise mode")
    ap.add_argument("--cache", default=None, help="SQLite judgment cache (shared by jobs)")
    ap.add_argument("--data-dir", type=Path, default=None, help="FastChat-format data folder instead of the wheel")
    ap.add_argument("--out", type=Path, required=True, help="result JSON")
    ap.add_argument("--tier", default="unknown", help="the tier, recorded in the provenance block")
    ap.add_argument(
        "--fastchat-out", type=Path, default=None, help="also write FastChat's judgment lines (<judge>_single/pair)"
    )
    ap.add_argument("--model-id", default=None, help="the model's name in FastChat files (default: the answers' model)")
    ap.add_argument("--baseline-id", default=None, help="the baseline's name there (default: its answers' model)")
    ap.add_argument("--judge-name", default=None, help="the judge's name there (default: the judge's id)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    from alignrepro.judges.cache import JudgmentCache

    for opt, path in (("--answers", args.answers), ("--baseline", args.baseline)):
        if path is not None and not path.is_file():
            raise UserError(f"{opt} {path}: no such file; expected {ANSWERS_FORMAT}")
    spec = JudgeSpec.from_dict(load_judge_config(args.judge_config), "--judge-config")
    if spec.backend == "oracle":
        raise UserError("--judge-config: the oracle judge checks verifiable answers; it cannot grade MT-Bench")
    data, rows = load_mtbench(args.data_dir), read_jsonl(args.answers)
    check_rows(rows, str(args.answers))
    baseline_rows = None if args.baseline is None else read_jsonl(args.baseline)
    if baseline_rows is not None:
        check_rows(baseline_rows, str(args.baseline))
    judge = make_judge(spec)
    cache = JudgmentCache(args.cache) if args.cache else None
    inputs = {"answers": {"path": str(args.answers), "sha256": sha256_file(args.answers)}}
    if args.baseline is None:
        result = grade_single(rows, judge, cache, data)
    else:
        result = grade_pairwise(rows, baseline_rows, judge, cache, data)
        inputs["baseline"] = {"path": str(args.baseline), "sha256": sha256_file(args.baseline)}
    if cache is not None:
        result["cache"] |= {"path": str(cache.path)}
        cache.close()
    result |= {"judge_config": spec.to_dict(), "inputs": inputs}  # vetted keys: no secret in here
    result["provenance"] = provenance(
        tier=args.tier,
        config=spec.to_dict(),
        judge={"id": judge.id, "prompt_hashes": result["prompt_hashes"], "heuristic": result["heuristic"]},
        data=data.provenance,
        answers_sha256=inputs["answers"]["sha256"],
        answers_generator=rows[0].get("generator") if rows else None,
    )
    if args.fastchat_out is not None:
        write_jsonl(args.fastchat_out, fastchat_lines(args, result, rows, baseline_rows, data))
    atomic_write_json(args.out, result)
    log.info("MT-Bench %s result -> %s", result["mode"], args.out)
    return result


def fastchat_lines(args: argparse.Namespace, result: dict[str, Any], rows, baseline_rows, data) -> list[dict]:
    """The result as FastChat judgment lines (alignrepro.evals.mtbench.fastchat_files)."""
    from alignrepro.evals.mtbench import fastchat_files as fc

    def name(given: str | None, rows: list[dict[str, Any]], path: Path) -> str:
        return fc.fastchat_name(given or (rows[0].get("generator") if rows else None) or path.stem)

    judge = fc.fastchat_name(args.judge_name or result["judge_id"])
    model = name(args.model_id, rows, args.answers)
    if baseline_rows is None:
        return fc.single_judgment_lines(result, rows, data, model, judge)
    baseline = name(args.baseline_id, baseline_rows, args.baseline)
    return fc.pair_judgment_lines(result, rows, baseline_rows, data, model, baseline, judge)


if __name__ == "__main__":
    main()
