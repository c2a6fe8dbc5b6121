"""AlpacaEval-style win rate of a model against fixed reference outputs, with the judge behind every number.

Pairs are (output_1 = reference, output_2 = model), so preference 2 is a model win (alpaca_eval convention).
Aggregation is alpaca_eval's own `pairwise_to_winrate`: win rate = mean(preference - 1) x 100, so a tie (1.5) counts
one half and a soft preference counts proportionally; NaN (undecided) items are dropped and reported as n_failed.

Outputs come in either format: the project's JSONL of records (matched by `id`) or alpaca_eval's own
`model_outputs.json`, a JSON list of {"instruction", "output", "generator", "dataset"}, which has no ids: when either
file has none, outputs are matched by instruction text (alpaca_eval's own merge key; the k-th repeat of an
instruction matches the k-th). `--export-alpaca-eval DIR` writes both sides in alpaca_eval's format, for
`alpaca_eval --model_outputs DIR/model_outputs.json --reference_outputs DIR/reference_outputs.json`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from alignrepro.data.records import Record, load_records
from alignrepro.errors import UserError
from alignrepro.io import atomic_write_json, sha256_file
from alignrepro.judges import JudgeSpec, make_judge
from alignrepro.judges.base import PairItem, PairwiseJudge
from alignrepro.judges.cache import JudgmentCache, cached_preferences
from alignrepro.provenance import provenance

log = logging.getLogger(__name__)
Z95 = 1.96


def _num(x: Any) -> float | int | None:
    # numpy scalars -> JSON-able Python numbers; NaN (e.g. the SE of one item) -> null
    v = x.item() if hasattr(x, "item") else x
    return None if isinstance(v, float) and math.isnan(v) else v


def compute_winrate(preferences: list[float]) -> dict[str, Any]:
    prefs = [1.5 if p == 0 else float(p) for p in preferences]  # 0 is alpaca_eval's legacy code for a draw
    bad = [p for p in prefs if not math.isnan(p) and not 1.0 <= p <= 2.0]
    if bad:
        raise ValueError(f"preferences must lie in [1, 2] (or be NaN); got {bad[:5]}")
    valid = [p for p in prefs if not math.isnan(p)]
    out: dict[str, Any] = {"n_failed": len(prefs) - len(valid)}
    if not valid:  # alpaca_eval raises on an empty list
        return out | {"win_rate": None, "standard_error": None, "ci95": None, "discrete_win_rate": None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from alpaca_eval.metrics import pairwise_to_winrate
    out |= {k: _num(v) for k, v in pairwise_to_winrate(valid).items()}
    se = out["standard_error"]  # sem of the per-item scores (preference - 1), x 100
    wr = out["win_rate"]
    out["ci95"] = None if se is None else [max(0.0, wr - Z95 * se), min(100.0, wr + Z95 * se)]
    return out


def load_judge_config(arg: str) -> dict[str, Any]:
    """A JSON string, or a path to a JSON/YAML file."""
    if arg.lstrip().startswith("{"):
        return json.loads(arg)
    path = Path(arg)
    if not path.is_file():
        raise FileNotFoundError(f"--judge-config: {arg!r} is neither a JSON object nor an existing file")
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


def judge_groups(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{"backend": ...} judges everything ("all"); {"verifiable": spec, "open": spec} splits by record.task."""
    if "backend" in config:
        return {"all": config}
    unknown = set(config) - {"verifiable", "open"}
    if unknown or not config:
        raise ValueError(
            f"judge config: expected key 'backend' or the groups 'verifiable'/'open', got {sorted(config)}"
        )
    return config


def group_of(record: Record, groups: dict[str, Any]) -> str:
    if "all" in groups:
        return "all"
    group = "open" if record.task == "open" else "verifiable"
    if group not in groups:
        raise ValueError(f"record {record.id} (task {record.task!r}) needs a {group!r} judge in the judge config")
    return group


ALPACA_EVAL_FORMAT = "alpaca_eval's model_outputs.json (a JSON list of {instruction, output, generator, dataset})"


def _alpaca_eval_record(i: int, item: Any) -> Record | None:
    if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("instruction", "output")):
        return None
    meta = {k: item[k] for k in ("generator", "dataset") if item.get(k) is not None}
    return Record(id=f"alpaca_eval:{i}", instruction=item["instruction"], output=item["output"], meta=meta)


def load_outputs(path: str | Path) -> tuple[list[Record], str]:
    """(records, format) of an outputs file: "records" (the project's JSONL) or "alpaca_eval" (its model_outputs.json,
    each item a Record without a real id: `alpaca_eval:<index>`)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read the outputs file ({e})") from e
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except ValueError as e:
            raise UserError(f"{path}: a JSON list that does not parse ({e}); expected {ALPACA_EVAL_FORMAT}") from e
        records = [_alpaca_eval_record(i, item) for i, item in enumerate(items)]
        bad = [i for i, r in enumerate(records) if r is None]
        if bad:
            raise UserError(
                f"{path}: item {bad[0]} has no string instruction and output; expected {ALPACA_EVAL_FORMAT}"
            )
        return records, "alpaca_eval"
    try:
        return load_records(path), "records"
    except ValueError as e:  # lines that are no JSON, or fields that are no Record's
        raise UserError(
            f"{path}: neither the project's JSONL of records (id, instruction, output, ...) nor {ALPACA_EVAL_FORMAT}"
            f" ({e})"
        ) from e


def match_by_instruction(
    model: list[Record], reference: list[Record], model_has_ids: bool = False
) -> tuple[list[Record], list[Record]]:
    """Pair outputs by instruction text, for files without ids (alpaca_eval's own merge key; the k-th repeat of an
    instruction matches the k-th): the side without real ids takes the other side's (the model's when it has them)."""

    def keys(records: list[Record]) -> list[tuple[str, int]]:
        seen: Counter[str] = Counter()
        out = []
        for r in records:
            text = r.prompt_text.strip()
            out.append((text, seen[text]))
            seen[text] += 1
        return out

    mk, rk = keys(model), keys(reference)
    known = set(rk)
    unmatched = [m.prompt_text[:60] for m, k in zip(model, mk, strict=True) if k not in known]
    if unmatched:
        raise ValueError(
            f"{len(unmatched)} model record(s) have no reference output with the same instruction, e.g. {unmatched[:3]}"
        )
    if model_has_ids:
        ids = dict(zip(mk, (m.id for m in model), strict=True))
        return model, [replace(r, id=ids[k]) for r, k in zip(reference, rk, strict=True) if k in ids]
    ids = dict(zip(rk, (r.id for r in reference), strict=True))
    return [replace(m, id=ids[k]) for m, k in zip(model, mk, strict=True)], reference


def to_alpaca_eval(records: list[Record], generator: str) -> list[dict[str, Any]]:
    """Records as alpaca_eval's model_outputs.json items."""
    return [
        {"instruction": r.prompt_text, "output": r.output, "generator": r.meta.get("generator") or generator,
         "dataset": r.meta.get("dataset") or r.source or "alignrepro"}
        for r in records
    ]  # fmt: skip


def make_pairs(model: list[Record], reference: list[Record]) -> list[PairItem]:
    refs = {r.id: r for r in reference}
    missing = [m.id for m in model if m.id not in refs]
    if missing:
        raise ValueError(f"{len(missing)} model record(s) have no reference output, e.g. {missing[:5]}")
    items, n_mismatch = [], 0
    for m in model:
        r = refs[m.id]
        n_mismatch += m.prompt_text != r.prompt_text
        if m.output is None or r.output is None:
            raise ValueError(f"record {m.id}: missing output ({'model' if m.output is None else 'reference'})")
        if m.reference is None and r.reference is not None:
            m = Record(**{**m.to_dict(), "reference": r.reference})
        items.append(PairItem(m.prompt_text, output_1=r.output, output_2=m.output, record=m))
    if n_mismatch:  # same id, other prompt: the two files probably come from different prompt sets
        log.warning(
            "%d of %d pairs: model and reference instructions differ (judged on the model's)", n_mismatch, len(items)
        )
    return items


def evaluate(
    items: list[PairItem], judges: dict[str, PairwiseJudge], groups_of: list[str], cache: JudgmentCache | None = None
) -> dict[str, Any]:
    prefs: list[float] = [math.nan] * len(items)
    result: dict[str, Any] = {"groups": {}}
    for name, judge in judges.items():
        idx = [i for i, g in enumerate(groups_of) if g == name]
        # Identical outputs are a tie by definition (both-order averaging gives exactly 1.5 too): don't judge them.
        same = {i for i in idx if items[i].output_1.strip() == items[i].output_2.strip()}
        todo = [i for i in idx if i not in same]
        sub = [items[i] for i in todo]
        judged = (cached_preferences(judge, sub, cache) if cache is not None else judge.preferences(sub)) if sub else []
        for i, p in zip(todo, judged, strict=True):
            prefs[i] = float(p)
        for i in same:
            prefs[i] = 1.5
        got = [prefs[i] for i in idx]
        info = {"judge_id": judge.id, "prompt_hash": judge.prompt_hash, "heuristic": bool(judge.heuristic)}
        if getattr(judge, "stats", None) is not None:
            info["usage"] = judge.stats
        result["groups"][name] = info | {"n": len(idx), "n_identical": len(same)} | compute_winrate(got)
        log.info(
            "group %s: win rate %s over %d items, judge %s",
            name,
            result["groups"][name]["win_rate"],
            len(idx),
            judge.id,
        )
    result |= compute_winrate(prefs)
    result["judge_ids"] = sorted({j.id for j in judges.values()})
    result["heuristic"] = any(j.heuristic for j in judges.values())  # any heuristic number makes the total meaningless
    result["annotations"] = [
        {
            "id": it.record.id if it.record else None,
            "task": it.record.task if it.record else None,
            "preference": _num(p),
            "group": g,
            "judge_id": judges[g].id,
        }
        for it, p, g in zip(items, prefs, groups_of, strict=True)
    ]
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model-outputs",
        required=True,
        help="the model's outputs: JSONL of Record dicts with `output`, or alpaca_eval's model_outputs.json (a JSON "
        "list of {instruction, output, generator, dataset}: no ids, so matched to the reference by instruction text)",
    )
    ap.add_argument(
        "--reference-outputs", required=True, help="the reference model's outputs, in either of the same formats"
    )
    ap.add_argument(
        "--judge-config",
        required=True,
        help='make_judge spec as JSON or a JSON/YAML path; may map {"verifiable": spec, "open": spec}',
    )
    ap.add_argument("--cache", default=None, help="SQLite judgment cache (shared by jobs)")
    ap.add_argument("--out", required=True, help="result JSON")
    ap.add_argument("--tier", default="unknown", help="the tier, recorded in the provenance block")
    ap.add_argument(
        "--export-alpaca-eval",
        default=None,
        metavar="DIR",
        help="also write both sides as alpaca_eval's model_outputs.json / reference_outputs.json there",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    (model, model_fmt), (reference, ref_fmt) = load_outputs(args.model_outputs), load_outputs(args.reference_outputs)
    if "alpaca_eval" in (model_fmt, ref_fmt):  # a file without ids: pair by instruction text
        model, reference = match_by_instruction(model, reference, model_has_ids=model_fmt == "records")
    specs = {  # typed once: a misspelt key fails here, naming it, before any judge is built
        g: JudgeSpec.from_dict(spec, "--judge-config" + ("" if g == "all" else f".{g}"))
        for g, spec in judge_groups(load_judge_config(args.judge_config)).items()
    }
    groups_of = [group_of(r, specs) for r in model]
    judges = {name: make_judge(spec) for name, spec in specs.items() if name in groups_of}
    cache = JudgmentCache(args.cache) if args.cache else None
    result = evaluate(make_pairs(model, reference), judges, groups_of, cache)
    result["judge_config"] = {g: specs[g].to_dict() for g in judges}  # vetted keys: no secret in here
    result["inputs"] = {
        "model_outputs": {"path": args.model_outputs, "sha256": sha256_file(args.model_outputs), "format": model_fmt},
        "reference_outputs": {
            "path": args.reference_outputs,
            "sha256": sha256_file(args.reference_outputs),
            "format": ref_fmt,
        },
    }
    if cache is not None:
        result["cache"] = {"path": str(cache.path), "hits": cache.hits, "misses": cache.misses}
        cache.close()
    result["provenance"] = provenance(
        tier=args.tier,
        config=result["judge_config"],
        judges={g: {"id": j.id, "prompt_hash": j.prompt_hash} for g, j in judges.items()},
        model_outputs_generator=model[0].meta.get("generator") if model else None,
        reference_generator=reference[0].meta.get("generator") if reference else None,
    )
    if args.export_alpaca_eval:
        out = Path(args.export_alpaca_eval)
        atomic_write_json(out / "model_outputs.json", to_alpaca_eval(model, Path(args.model_outputs).stem))
        atomic_write_json(out / "reference_outputs.json", to_alpaca_eval(reference, Path(args.reference_outputs).stem))
    atomic_write_json(args.out, result)
    log.info(
        "win rate %s (95%% CI %s, n=%s) by %s -> %s",
        result["win_rate"],
        result["ci95"],
        result.get("n_total"),
        ", ".join(result["judge_ids"]),
        args.out,
    )
    return result


if __name__ == "__main__":
    main()
