"""Table 3: prompting only (no training). The base model answers the test queries with one prompting template.

Templates (templates.PROMPTING_TEMPLATES): prompt-plain, prompt-zeroshot-cot ("Let's think step by step." after the
request, one call; the whole output is the answer), prompt-critique-revise (answer -> self-critique -> revision, CAI's
requests as follow-up turns), prompt-analysis-answer, prompt-guidance-answer, prompt-aligncot (Analysis -> Guidance ->
Answer, the same step prompts as the alignCoT-v1 chains). Multi-step templates run as separate batched calls, each
conditioned on the earlier outputs. MATRIX prompting is reported only (see baselines.py).

Only the final answer is written, as {"id", "output"} rows for the shared judges (every test id, in the query file's
order). An empty final output falls back (counted): Critique-Revise keeps the unrevised answer; the others retry
once with the plain prompt; still empty -> "" (the judges see an empty answer, not a missing row). Every
intermediate text goes to <out>.trace.jsonl; counts, template card, timings and provenance to <out>.summary.json.

CLI: `python -m alignrepro.methods.mote.prompting --model results/models/smollm2-135m-instruct
      --queries results/mote/tiny/data/test.jsonl --template prompt-aligncot --gen-json '{"max_new_tokens": 64}'
      --tier tiny --out results/mote/tiny/prompting/prompt-aligncot.jsonl`
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from alignrepro.generation import backend_for
from alignrepro.io import atomic_write_json, read_jsonl, sha256_file, write_jsonl
from alignrepro.methods.mote import templates as T
from alignrepro.methods.mote.chains import StepRunner, chain_settings, run_step_adaptive
from alignrepro.methods.mote.settings import ChainSettings
from alignrepro.provenance import provenance

log = logging.getLogger(__name__)
Row = dict[str, Any]


def run_template(
    runner: StepRunner, template: T.Template, rows: list[Row]
) -> tuple[list[str], list[dict[str, str | None]], list[list[str]]]:
    """(final outputs, every step's output per row, fallbacks per row) of a multi-step prompting template."""
    contexts: list[dict[str, str | None]] = [{} for _ in rows]
    fallbacks: list[list[str]] = [[] for _ in rows]
    messages = [r["messages"] for r in rows]
    for step in template.steps:
        res = run_step_adaptive(runner, step, messages, contexts)
        for ctx, fb, (text, flags) in zip(contexts, fallbacks, res, strict=True):
            ctx[step.name] = text
            fb += flags + ([f"empty_{step.name}"] if text is None else [])
    last = template.steps[-1].name
    finals: list[str | None] = [c[last] for c in contexts]
    if last == "revision":
        for i, c in enumerate(contexts):
            if finals[i] is None and c.get("answer"):
                finals[i] = c["answer"]
                fallbacks[i].append("revision_fell_back_to_answer")
    retry = [i for i, f in enumerate(finals) if f is None and len(template.steps) > 1]
    if retry:
        res = runner.run_step(T.PLAIN_ANSWER, [(rows[i]["messages"], {}) for i in retry])
        for i, (text, _) in zip(retry, res, strict=True):
            fallbacks[i].append("final_from_plain_prompt" if text else "final_empty_after_retry")
            finals[i] = text
    for i, f in enumerate(finals):
        if f is None and "final_empty_after_retry" not in fallbacks[i]:
            fallbacks[i].append("final_empty")
    return [f or "" for f in finals], contexts, fallbacks


def answer_with_template(
    backend: Any, fmt: str, rows: list[Row], template_id: str, gen: ChainSettings | dict[str, Any]
) -> tuple[list[Row], list[Row], dict[str, Any]]:
    template = T.get_template(template_id)
    if template.id not in T.PROMPTING_TEMPLATES:
        raise ValueError(f"{template_id!r} is not a prompting template; expected one of {T.PROMPTING_TEMPLATES}")
    # Table 3 scores what the prompting method produces: a copied step is flagged, never replaced.
    # As before typing: False only where `gen` leaves copy_fallback out (a merged section gives the YAML's value).
    spec = chain_settings({"copy_fallback": False, **gen} if isinstance(gen, dict) else gen, "mote.baseline_generation")
    runner = StepRunner(backend, fmt, spec, key="mote.baseline_generation")
    start = time.perf_counter()
    finals, contexts, fallbacks = run_template(runner, template, rows)
    out = [{"id": r["id"], "output": f} for r, f in zip(rows, finals, strict=True)]
    trace = [
        {"id": r["id"], "kind": r.get("kind"), "steps": c, "fallbacks": fb}
        for r, c, fb in zip(rows, contexts, fallbacks, strict=True)
    ]
    summary = {
        "template": template.card(),
        "n_queries": len(rows),
        "n_empty_outputs": sum(not f for f in finals),
        "fallbacks": dict(sorted(Counter(f for fb in fallbacks for f in fb).items())),
        "generation": spec.to_dict(),
        "timing": {"seconds_total": round(time.perf_counter() - start, 2), "per_step": runner.timings},
    }
    return out, trace, summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(
        prog="python -m alignrepro.methods.mote.prompting", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--model", type=Path, help="base model folder; not needed for an openai backend")
    ap.add_argument("--queries", type=Path, required=True, help="test query JSONL of mote.queries")
    ap.add_argument("--template", required=True, choices=T.PROMPTING_TEMPLATES)
    ap.add_argument("--gen-json", default="{}", help="generation settings (as mote.chains)")
    ap.add_argument("--tier", default="unknown")
    ap.add_argument("--out", type=Path, required=True, help='{"id","output"} JSONL (+ .trace.jsonl, .summary.json)')
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    rows = read_jsonl(args.queries)
    spec = chain_settings(json.loads(args.gen_json), "--gen-json")
    backend, fmt, gen = backend_for(spec.generation, args.model, "auto")
    spec = spec.with_(generation=gen)  # with the format's stop strings
    out, trace, summary = answer_with_template(backend, fmt, rows, args.template, spec)
    write_jsonl(args.out, out)
    write_jsonl(args.out.with_suffix(".trace.jsonl"), trace)
    summary["provenance"] = provenance(
        tier=args.tier,
        config={**spec.to_dict(), "template": summary["template"]["sha256"]},
        seed=spec.generation.seed,
        model=getattr(backend, "identity", backend.id),
        generator=backend.id,
        prompt_format=fmt,
        queries={"file": str(args.queries), "sha256": sha256_file(args.queries)},
    )
    atomic_write_json(args.out.with_suffix(".summary.json"), summary)
    log.info("%s: %d outputs -> %s; fallbacks %s", args.template, len(out), args.out, summary["fallbacks"])
    return summary


if __name__ == "__main__":
    main()
