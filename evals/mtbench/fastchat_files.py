"""MT-Bench in FastChat's own file formats (lm-sys/FastChat fastchat/llm_judge), so FastChat's tools read our runs.

A FastChat `data/` folder holds `judge_prompts.jsonl` and, per benchmark, `mt_bench/question.jsonl`,
`mt_bench/reference_answer/gpt-4.jsonl`, `mt_bench/model_answer/<model>.jsonl` (gen_model_answer.py: question_id,
answer_id, model_id, choices [{index, turns}], tstamp) and `mt_bench/model_judgment/<judge>_single.jsonl` /
`<judge>_pair.jsonl` (gen_judgment.py: question_id, model or model_1/model_2, judge [judge name, prompt name],
user_prompt(s), judgment(s), score or g1_winner/g2_winner, turn, tstamp). `show_result.py --input-file` prints the
tables from the judgment files; `gen_judgment.py` re-judges the answers (e.g. with GPT-4) from the same folder.

Per model, `alignrepro respond` writes the model_answer lines (answers/<key>/mtbench_fastchat.jsonl) and
`alignrepro mtbench-grade --fastchat-out` the judgment lines (scores/<key>/mtbench_fastchat_{single,pair}.jsonl);
`python -m alignrepro.evals.mtbench.fastchat_files` (rule evals_fastchat) gathers them into one FastChat folder.

Where this suite differs from a FastChat run, the files say so instead of pretending:
- model names: the suite's model key with "/" made "__" (FastChat names a model by its answer file's name);
- `judgment`: local judges score from next-token probabilities and keep no text, so the line says how the score was
  made; `score` is then the expected rating (a float), -1 where unparsable (FastChat's code, dropped by show_result);
- pairwise: model_1 is the model, model_2 the baseline (FastChat's pairwise-baseline order); g1 shows model_1 first.
  A soft verdict gives the winner by its side of 1.5 (`g1_verdict`/`g2_verdict` keep the numbers). show_result counts
  a single-order tie or disagreeing orders as a tie, our win rate averages the two verdicts: the two agree whenever
  every verdict is a clear 1 or 2.
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import time
from pathlib import Path
from typing import Any

from alignrepro.errors import UserError
from alignrepro.evals.mtbench.data import JUDGE_PROMPTS, QUESTIONS, REFERENCES, MTBenchData, _read, load_mtbench
from alignrepro.io import atomic_write_text, read_jsonl, stable_hash, write_jsonl

log = logging.getLogger(__name__)
BENCH = "mt_bench"
REFERENCE_MODEL = "gpt-4"  # FastChat's reference answers' file name (reference_answer/gpt-4.jsonl)


def fastchat_name(name: str) -> str:
    """A model or judge name FastChat can use as a file name: "cut/ours" -> "cut__ours"."""
    return re.sub(r"[^\w.+-]+", "_", name.replace("/", "__")).strip("_") or "model"


def answer_lines(rows: list[dict[str, Any]], model_id: str) -> list[dict[str, Any]]:
    """Our answers rows (question_id, turns, answers, …) as FastChat model_answer lines."""
    now = time.time()
    return [
        {
            "question_id": int(r["question_id"]),
            "answer_id": stable_hash([model_id, r["question_id"], r["answers"]], 22),  # FastChat: a shortuuid
            "model_id": model_id,
            "choices": [{"index": 0, "turns": list(r["answers"])}],
            "tstamp": now,
        }
        for r in rows
    ]


def _judgment_note(judge_id: str, value: float, what: str) -> str:
    if math.isnan(value):
        return f"[alignrepro] judge {judge_id}: no parsable {what}"
    return f"[alignrepro] judge {judge_id}: {what} {value:.4g} (no judge text kept; see the suite's score file)"


def single_judgment_lines(
    result: dict[str, Any], rows: list[dict[str, Any]], data: MTBenchData, model_id: str, judge_name: str
) -> list[dict[str, Any]]:
    """grade_single's annotations as FastChat `<judge>_single.jsonl` lines (the judge prompt re-rendered as graded)."""
    from alignrepro.evals.mtbench.grade import render_single

    by_id = {int(r["question_id"]): r for r in rows}
    now, out = time.time(), []
    for a in result["annotations"]:
        rating = math.nan if a["rating"] is None else float(a["rating"])
        _, messages = render_single(by_id[a["question_id"]], a["turn"], data)
        out.append(
            {
                "question_id": a["question_id"],
                "model": model_id,
                "judge": [judge_name, a["prompt"]],
                "user_prompt": messages[-1]["content"],
                "judgment": _judgment_note(result["judge_id"], rating, "rating"),
                "score": -1 if math.isnan(rating) else rating,
                "turn": a["turn"],
                "tstamp": now,
            }
        )
    return out


def _winner(verdict: float | None, first: str, second: str) -> str:
    """A verdict in the alpaca_eval convention (1 = the answer shown first) as FastChat's winner label."""
    if verdict is None or math.isnan(verdict):
        return "error"
    return first if verdict < 1.5 else second if verdict > 1.5 else "tie"


def pair_judgment_lines(
    result: dict[str, Any],
    rows: list[dict[str, Any]],
    baseline_rows: list[dict[str, Any]],
    data: MTBenchData,
    model_id: str,
    baseline_id: str,
    judge_name: str,
) -> list[dict[str, Any]]:
    """grade_pairwise's annotations as FastChat `<judge>_pair.jsonl` lines (pairwise-baseline: model_1 = the model)."""
    from alignrepro.evals.mtbench.grade import render_pair

    by_id = {int(r["question_id"]): r for r in rows}
    base = {int(r["question_id"]): r for r in baseline_rows}
    now, out = time.time(), []
    for a in result["annotations"]:
        row, qid, turn = by_id[a["question_id"]], a["question_id"], a["turn"]
        # g1: the model (model_1) shown first = our swapped order; g2: the baseline first = our first order.
        g1, g2 = a["verdict_model_first"], a["verdict_model_second"]
        g1_prompt = render_pair(row, row["answers"], base[qid]["answers"], turn, data)[1]
        g2_prompt = render_pair(row, base[qid]["answers"], row["answers"], turn, data)[1]
        out.append(
            {
                "question_id": qid,
                "model_1": model_id,
                "model_2": baseline_id,
                "g1_winner": _winner(g1, "model_1", "model_2"),
                "g2_winner": _winner(g2, "model_2", "model_1"),
                "judge": [judge_name, a["prompt"]],
                "g1_user_prompt": g1_prompt[-1]["content"],
                "g1_judgment": _judgment_note(result["judge_id"], math.nan if g1 is None else g1, "verdict"),
                "g2_user_prompt": g2_prompt[-1]["content"],
                "g2_judgment": _judgment_note(result["judge_id"], math.nan if g2 is None else g2, "verdict"),
                "g1_verdict": g1,
                "g2_verdict": g2,
                "turn": turn,
                "tstamp": now,
            }
        )
    return out


def _read_lines(path: Path, what: str, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    if not path.is_file():
        raise UserError(f"{path}: no such file; expected FastChat {what} lines (JSONL)")
    rows = read_jsonl(path)
    for i, r in enumerate(rows, 1):
        missing = [f for f in fields if f not in r]
        if missing:
            raise UserError(
                f"{path}:{i}: no {', '.join(missing)}; expected FastChat {what} lines ({', '.join(fields)})"
            )
    return rows


def gather(
    out_dir: Path,
    answers: list[Path],
    single: list[Path],
    pair: list[Path],
    judge_name: str | None = None,
    data_dir: Path | None = None,
) -> dict[str, Any]:
    """Write FastChat's `data/` folder at out_dir from per-model files: the answered questions only (gen_judgment.py
    looks up every model's answer to every question), the reference answers and judge prompts as shipped. The
    judgment files are named by `judge_name`, by default the judge named in their first line."""
    out, bench = Path(out_dir), Path(out_dir) / BENCH
    qids: set[int] = set()
    names = []
    for path in answers:
        lines = _read_lines(Path(path), "model_answer", ("question_id", "model_id", "choices"))
        name = lines[0]["model_id"] if lines else fastchat_name(Path(path).parent.name)
        qids |= {int(x["question_id"]) for x in lines}
        write_jsonl(bench / "model_answer" / f"{name}.jsonl", lines)
        names.append(name)
    data = load_mtbench(data_dir)
    write_jsonl(
        bench / QUESTIONS,
        [{"question_id": q.question_id, "category": q.category, "turns": q.turns} for q in data.questions
         if q.question_id in qids],
    )  # fmt: skip
    refs = [
        {"question_id": qid, "model_id": REFERENCE_MODEL, "choices": [{"index": 0, "turns": turns}]}
        for qid, turns in sorted(data.references.items())
    ]
    write_jsonl(bench / REFERENCES, refs)
    atomic_write_text(out / JUDGE_PROMPTS, _read(JUDGE_PROMPTS, data_dir))
    written = {"models": names, "questions": len(qids)}
    for mode, paths, fields in (("single", single, ("score", "turn")), ("pair", pair, ("g1_winner", "g2_winner"))):
        if paths:
            fields = ("question_id", "judge", *fields)
            lines = [x for p in paths for x in _read_lines(Path(p), f"{mode} judgment", fields)]
            judge = fastchat_name(judge_name or (lines[0]["judge"][0] if lines else "judge"))
            write_jsonl(bench / "model_judgment" / f"{judge}_{mode}.jsonl", lines)
            written[mode] = len(lines)
    log.info("FastChat data folder -> %s (%s)", out, written)
    return written


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(
        prog="python -m alignrepro.evals.mtbench.fastchat_files", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--out-dir", type=Path, required=True, help="FastChat's data/ folder to write")
    ap.add_argument("--answers", type=Path, nargs="*", default=[], help="per-model model_answer JSONL files")
    ap.add_argument("--single", type=Path, nargs="*", default=[], help="per-model single judgment JSONL files")
    ap.add_argument("--pair", type=Path, nargs="*", default=[], help="per-model pair judgment JSONL files")
    ap.add_argument("--judge-name", default=None, help="the judgment files' judge name (default: their judge)")
    ap.add_argument("--data-dir", type=Path, default=None, help="FastChat-format data folder instead of the wheel")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return gather(args.out_dir, args.answers, args.single, args.pair, args.judge_name, args.data_dir)


if __name__ == "__main__":
    main()
