"""Evaluate one model outside the workflow: a local model folder (with model.json), a plain Hugging Face folder or
a PEFT adapter folder (no model.json needed), or an OpenAI-compatible endpoint (e.g. a vLLM server), on the shared
benchmarks with the settings of a tier, and print a summary.

    alignrepro evaluate --model results/models/smollm2-135m-instruct --tier tiny --out-dir /tmp/eval-smollm2
    alignrepro evaluate --model ~/my-sft-model --tier tiny --out-dir /tmp/eval-mine        # config.json + weights
    alignrepro evaluate --model ~/my-lora --base smollm2-135m-instruct --tier tiny --out-dir /tmp/eval-lora
    alignrepro evaluate --endpoint http://localhost:8000/v1 --endpoint-model my-model --tier full --out-dir ...

A folder without model.json gets a reference written to <out-dir>/model/model.json (alignrepro.external: no
weights copied, the checkpoint's files hashed); every step then loads it through that reference. A registry name
or a hub id (org/name[@revision]; the hub or, offline, the local HF cache must have it) works the same way.

Besides the suite's files, the field's own: answers/model_outputs.json (alpaca_eval) and fastchat/ (FastChat's
MT-Bench data folder: model_answer/, model_judgment/<judge>_single.jsonl, for show_result.py / gen_judgment.py).

The steps are the workflow's own (same modules, same files), run one after another in this process.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from alignrepro.config import TIERS, resolve_config
from alignrepro.errors import UserError
from alignrepro.io import read_json

log = logging.getLogger(__name__)


def judge_spec(cfg: dict[str, Any], name: str, models_dir: Path) -> dict[str, Any]:
    from alignrepro.judges import registry, resolve_spec

    judges = registry(cfg)
    if name not in judges:
        raise UserError(
            f"--judge {name!r}: not in evals.judges of this tier; expected one of {', '.join(sorted(judges))}"
        )
    return resolve_spec(judges[name], models_dir)


def reference(model: Path, base: str | None, template: str | None, models_dir: Path, out: Path) -> Path:
    """The model folder to evaluate: `model` itself when it has a model.json, else a reference written under the
    output folder (alignrepro.external.resolve_model: an HF or PEFT folder, a registry name or a hub id)."""
    from alignrepro.external import resolve_model

    ref = resolve_model(model, base=base, prompt_template=template, models_dir=models_dir, out=out / "model")
    if ref != model:
        log.info("%s has no model.json: evaluating it through the reference %s", model, ref / "model.json")
    return ref


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="alignrepro evaluate", description=__doc__.split("\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--model",
        type=Path,
        help="a model folder (model.json), a plain HF folder, a PEFT adapter folder, a registry name or a hub id",
    )
    src.add_argument("--endpoint", help="base URL of an OpenAI-compatible endpoint (key from $OPENAI_API_KEY)")
    ap.add_argument("--endpoint-model", help="model name at the endpoint")
    ap.add_argument("--tier", default="tiny", choices=TIERS, help="whose evals settings to use")
    ap.add_argument("--judge", default=None, help="judge name from the tier's evals.judges (default: evals.judge)")
    ap.add_argument("--judge-config", default=None, help="or a make_judge spec as JSON / a JSON-YAML path")
    ap.add_argument(
        "--reference-outputs",
        default=None,
        help="AlpacaEval reference: answers JSONL (records) or alpaca_eval's model_outputs.json",
    )
    ap.add_argument("--models-dir", type=Path, default=Path("results/models"), help="where registry models live")
    ap.add_argument(
        "--base",
        default=None,
        help="PEFT adapter folder: its base, a registry model (under --models-dir) or a model folder "
        "(default: the base recorded in adapter_config.json, when it is a local folder)",
    )
    ap.add_argument(
        "--prompt-template",
        default=None,
        choices=["chat", "alpaca", "hh"],
        help="folder without model.json: the format it answers in (default: chat, its tokenizer's chat template)",
    )
    ap.add_argument("--benchmarks", default="alpacaeval,mtbench,lmeval,safety")
    ap.add_argument("--out-dir", type=Path, required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from alignrepro.evals import respond
    from alignrepro.evals.alpacaeval import prompts as ae_prompts
    from alignrepro.evals.alpacaeval import winrate
    from alignrepro.evals.lmeval import run as lmeval
    from alignrepro.evals.mtbench import fastchat_files, grade
    from alignrepro.evals.safety import prompts as sf_prompts
    from alignrepro.evals.safety import score as sf_score

    cfg = resolve_config({"tier": args.tier})
    name = args.endpoint_model or Path(str(args.model).rstrip("/")).name  # the model's name in the field's files
    if args.model is not None:
        args.model = reference(args.model, args.base, args.prompt_template, args.models_dir, args.out_dir)
    ev, out, benches = cfg["evals"], args.out_dir, set(args.benchmarks.split(","))
    judge = args.judge_config or json.dumps(judge_spec(cfg, args.judge or ev["judge"], args.models_dir))
    gen = {**ev["generation"], "dtype": cfg["dtype"]}
    model_args = ["--model", str(args.model)] if args.model else []
    if args.endpoint:
        gen |= {"backend": "openai", "model": args.endpoint_model, "base_url": args.endpoint}

    p = ev["alpacaeval"]["prompts"]
    ae_args = ["--source", p["source"], "--out", str(out / "prompts/alpacaeval.jsonl")]
    if p["source"] == "file":
        ae_args += ["--path", p["path"], "--data-file", p.get("data_file") or "alpaca_eval.json"]
    if ev["alpacaeval"]["reference"] == "dataset" and not args.reference_outputs:
        args.reference_outputs = str(out / "prompts/alpacaeval_reference.jsonl")
        ae_args += ["--reference-out", args.reference_outputs]
    ae_prompts.main(ae_args + (["--n", str(ev["alpacaeval"]["n"])] if ev["alpacaeval"]["n"] else []))
    s = ev["safety"]
    sizes = [a for k in ("n_harmful", "n_benign", "n_jailbreak") if s[k] is not None
             for a in (f"--{k.replace('_', '-')}", str(s[k]))]  # fmt: skip
    sizes += ["--templates-per-request", str(s["templates_per_request"]), "--strongreject", s["strongreject_set"]]
    sf_prompts.main(["--out-dir", str(out / "prompts/safety"), *sizes, "--seed", str(cfg["seed"])])
    per_cat = ["--mtbench-per-category", str(ev["mtbench"]["per_category"])] if ev["mtbench"]["per_category"] else []
    respond.main([*model_args, "--alpacaeval-prompts", str(out / "prompts/alpacaeval.jsonl"), "--safety-prompts-dir",
                  str(out / "prompts/safety"), *per_cat, "--seed", str(cfg["seed"]), "--spec-json", json.dumps(gen),
                  "--out-dir", str(out / "answers"), "--model-id", name, "--tier", args.tier])  # fmt: skip
    common = ["--judge-config", judge, "--cache", str(out / "judge_cache.sqlite"), "--tier", args.tier]
    results: dict[str, Any] = {}
    if "alpacaeval" in benches:
        if args.reference_outputs:
            results["alpacaeval"] = winrate.main(["--model-outputs", str(out / "answers/alpacaeval.jsonl"),
                                                  "--reference-outputs", args.reference_outputs, *common,
                                                  "--out", str(out / "scores/alpacaeval.json")])  # fmt: skip
        else:
            log.warning("AlpacaEval skipped: give --reference-outputs (e.g. another model's answers/alpacaeval.jsonl)")
    if "mtbench" in benches:
        fastchat = out / "scores/mtbench_fastchat_single.jsonl"
        # the judge's config name; a --judge-config spec is named by its judge id
        judge_name = [] if args.judge_config else ["--judge-name", args.judge or ev["judge"]]
        results["mtbench"] = grade.main(["--answers", str(out / "answers/mtbench.jsonl"), *common,
                                         "--out", str(out / "scores/mtbench.json"), "--fastchat-out", str(fastchat),
                                         "--model-id", name, *judge_name])  # fmt: skip
        fastchat_files.main(["--out-dir", str(out / "fastchat"), "--single", str(fastchat), "--answers",
                             str(out / "answers/mtbench_fastchat.jsonl")])  # fmt: skip
    if "safety" in benches:
        results["safety"] = sf_score.main(["--answers", str(out / "answers/safety.jsonl"), *common,
                                           "--harmful-threshold", str(s["harmless_threshold"]),
                                           "--out", str(out / "scores/safety.json")])  # fmt: skip
    if "lmeval" in benches and args.model:  # log-likelihood tasks need the weights, not an endpoint
        lmeval.main(["--model", str(args.model), *lmeval.config_args(ev["lmeval"]), "--out",
                     str(out / "scores/lmeval.json"), "--lm-eval-dir", str(out / "scores/lm_eval"),
                     "--tier", args.tier])  # fmt: skip
        results["lmeval"] = read_json(out / "scores/lmeval.json")
    print(summary(results, out))
    return results


def summary(results: dict[str, Any], out: Path) -> str:
    lines = [f"Evaluation -> {out}/scores"]
    if "alpacaeval" in results:
        r = results["alpacaeval"]
        lines.append(
            f"  AlpacaEval win rate {r.get('win_rate')} (95% CI {r.get('ci95')}) by {', '.join(r['judge_ids'])}"
        )
    if "mtbench" in results:
        r = results["mtbench"]
        lines.append(
            f"  MT-Bench {r.get('score')} (n={r.get('n')}, unparsable {r.get('n_failed')}) by {r.get('judge_id')}"
        )
    if "lmeval" in results:
        for task, t in results["lmeval"]["tasks"].items():
            lines.append(f"  lm-eval {t.get('label', task)}: {t.get('acc', t.get('exact_match', t.get('status')))}")
    if "safety" in results:
        for name, st in results["safety"]["sets"].items():
            m = st["metrics"]
            key = "over_refusal_rate_xstest" if name == "benign" else "harmless_rate_strmatch_xstest"
            lines.append(f"  safety {name}: {m[key]['name']} = {m[key]['value']}")
    if any(r.get("heuristic") for r in results.values() if isinstance(r, dict)):
        lines.append("  HEURISTIC judge: judged numbers mean nothing")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
