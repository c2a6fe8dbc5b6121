"""AlpacaEval-style win rate of a model against fixed reference outputs, with the judge behind every number.

Pairs are (output_1 = reference, output_2 = model), so preference 2 is a model win (alpaca_eval convention).
Aggregation is alpaca_eval's own `pairwise_to_winrate`: win rate = mean(preference - 1) x 100, so a tie (1.5) counts
one half and a soft preference counts proportionally; NaN (undecided) items are dropped and reported as n_failed,
the unparsable (answer-token mass below a local judge's threshold) and truncated ones also by id. Beside the raw win
rate: alpaca_eval's `length_controlled_minimal` (its GLM without the hub-only instruction difficulty).

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
from alignrepro.io import DataError, atomic_write_json, sha256_file
from alignrepro.judges import JudgeSpec, make_judge
from alignrepro.judges.base import Judgment, PairItem, PairwiseJudge
from alignrepro.judges.cache import JudgmentCache, cached_judgments
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
        try:
            return json.loads(arg)
        except ValueError as e:
            raise UserError(f"--judge-config: not valid JSON ({e}); expected a judge spec object or a file") from e
    path = Path(arg)
    if not path.is_file():
        raise UserError(f"--judge-config: {arg!r} is neither a JSON object nor an existing file")
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        raise UserError(f"--judge-config {path}: does not parse ({e}); expected a judge spec in JSON or YAML") from e


def judge_groups(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{"backend": ...} judges everything ("all"); {"verifiable": spec, "open": spec} splits by record.task."""
    if "backend" in config:
        return {"all": config}
    unknown = set(config) - {"verifiable", "open"}
    if unknown or not config:
        raise DataError(
            f"--judge-config: expected key 'backend' or the groups 'verifiable'/'open', got {sorted(config)}"
        )
    return config


def group_of(record: Record, groups: dict[str, Any]) -> str:
    if "all" in groups:
        return "all"
    group = "open" if record.task == "open" else "verifiable"
    if group not in groups:
        raise DataError(f"record {record.id} (task {record.task!r}) needs a {group!r} judge in --judge-config")
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
        why = "no such file" if isinstance(e, FileNotFoundError) else f"cannot read it ({e})"
        raise UserError(f"{path}: {why}; expected an outputs file: JSONL of records or {ALPACA_EVAL_FORMAT}") from e
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
        raise DataError(
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


def write_model_outputs(path: str | Path, records: list[Record], generator: str) -> None:
    """alpaca_eval's model_outputs.json of one model's records, every item naming `generator` (alpaca_eval's
    leaderboard row; `alpaca_eval --model_outputs <path>` reads it, as does `--model-outputs` here)."""
    atomic_write_json(path, [item | {"generator": generator} for item in to_alpaca_eval(records, generator)])


def make_pairs(model: list[Record], reference: list[Record]) -> list[PairItem]:
    refs = {r.id: r for r in reference}
    missing = [m.id for m in model if m.id not in refs]
    if missing:
        raise DataError(f"{len(missing)} model record(s) have no reference output, e.g. {missing[:5]}")
    items, n_mismatch = [], 0
    for m in model:
        r = refs[m.id]
        n_mismatch += m.prompt_text != r.prompt_text
        if m.output is None or r.output is None:
            raise DataError(f"record {m.id}: missing output ({'model' if m.output is None else 'reference'})")
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
    details: list[Judgment | None] = [None] * len(items)
    result: dict[str, Any] = {"groups": {}}
    for name, judge in judges.items():
        idx = [i for i, g in enumerate(groups_of) if g == name]
        # Identical outputs are a tie by definition (both-order averaging gives exactly 1.5 too): don't judge them.
        same = {i for i in idx if items[i].output_1.strip() == items[i].output_2.strip()}
        todo = [i for i in idx if i not in same]
        sub = [items[i] for i in todo]
        judged = cached_judgments(judge, sub, cache)  # no cache: all judged
        for i, j in zip(todo, judged, strict=True):
            prefs[i], details[i] = float(j.value), j
        for i in same:
            prefs[i] = 1.5
        got = [prefs[i] for i in idx]
        info = {"judge_id": judge.id, "prompt_hash": judge.prompt_hash, "heuristic": bool(judge.heuristic)}
        if getattr(judge, "stats", None) is not None:
            info["usage"] = judge.stats
        checks = judge_checks([details[i] for i in idx], [items[i] for i in idx], judge)
        result["groups"][name] = info | {"n": len(idx), "n_identical": len(same)} | compute_winrate(got) | checks
        log.info(
            "group %s: win rate %s over %d items, judge %s",
            name,
            result["groups"][name]["win_rate"],
            len(idx),
            judge.id,
        )
    result |= compute_winrate(prefs)
    result |= judge_checks(details, items, None)
    result |= length_controlled_minimal(items, prefs)
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
        | (d.to_dict() if d is not None else {})
        for it, p, g, d in zip(items, prefs, groups_of, details, strict=True)
    ]
    return result


def judge_checks(details: list[Judgment | None], items: list[PairItem], judge: Any) -> dict[str, Any]:
    """Unparsable (answer-token mass below the judge's threshold: NaN, never scored) and truncated judgments, with
    the ids of the items they hit; the mean answer-token mass where the judge measures it."""
    ids = [it.record.id if it.record else str(k) for k, it in enumerate(items)]
    masses = [d.answer_mass for d in details if d is not None and d.answer_mass is not None]
    out = {
        "n_unparsable": sum(bool(d and d.unparsable) for d in details),
        "unparsable_ids": [i for i, d in zip(ids, details, strict=True) if d and d.unparsable],
        "n_truncated": sum(bool(d and d.truncated) for d in details),
        "truncated_ids": [i for i, d in zip(ids, details, strict=True) if d and d.truncated],
        "answer_mass_mean": sum(masses) / len(masses) if masses else None,
    }
    if judge is not None:
        out["min_answer_mass"] = getattr(judge, "min_answer_mass", None)
    return out


LC_MIN_ITEMS = 10  # alpaca_eval's GLM is cross-validated over 5 folds of items; fewer leaves folds of one or two


def length_controlled_minimal(items: list[PairItem], prefs: list[float]) -> dict[str, Any]:
    """alpaca_eval's `length_controlled_minimal` win rate: its GLM (formula GLM_INFO["length_controlled_minimal"],
    `tanh(std_delta_len) + not_gamed_baseline - 1`, fitted by its own fit_LogisticRegressionCV), predicted at zero
    length difference. That variant needs neither the instruction difficulty nor the "gamed" annotations that
    alpaca_eval downloads from the hub (only the default `length_controlled_v1` uses them), so it is computed offline
    from the judged pairs alone; alpaca_eval's own featurizer downloads them anyway, so the design matrix is built
    here exactly as it builds it (std_delta_len = (len_1 - len_2) / std, preference - 1 in [0, 1])."""
    keep = [(it, p) for it, p in zip(items, prefs, strict=True) if not math.isnan(p)]
    out: dict[str, Any] = {"length_controlled_minimal": None}
    delta = [len(it.output_1) - len(it.output_2) for it, _ in keep]
    if len(keep) < LC_MIN_ITEMS or len(set(delta)) < 2:
        why = f"{len(keep)} judged pairs (needs {LC_MIN_ITEMS})" if len(keep) < LC_MIN_ITEMS else "no length variation"
        return out | {"lc_minimal_note": f"not computed: {why}"}
    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from alpaca_eval.metrics.glm_winrate import GLM_INFO, fit_LogisticRegressionCV, make_dmatrix_for_model

    info = GLM_INFO["length_controlled_minimal"]
    d = pd.Series(delta, dtype=float)
    df = pd.DataFrame({"preference": [p - 1.0 for _, p in keep], "std_delta_len": d / d.std()})
    df["not_gamed_baseline"] = True
    test = df[["not_gamed_baseline"]].copy()
    test["std_delta_len"] = 0.0
    train, x_test = make_dmatrix_for_model(df, test, formula=info["formula"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = fit_LogisticRegressionCV(train, "preference", is_ytrue_proba=True, **info["kwargs"])
    # No standard error: without a per-instruction feature the GLM predicts one value for every item, so alpaca_eval's
    # lc_standard_error (the SEM of those predictions) would be 0.
    return {
        "length_controlled_minimal": float(model.predict_proba(x_test)[:, 1].mean() * 100),
        "lc_minimal_note": "alpaca_eval GLM length_controlled_minimal (no instruction difficulty), offline; no SE",
    }


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
    try:
        if "alpaca_eval" in (model_fmt, ref_fmt):  # a file without ids: pair by instruction text
            model, reference = match_by_instruction(model, reference, model_has_ids=model_fmt == "records")
        items = make_pairs(model, reference)
    except DataError as e:  # name both files: the mismatch is between them
        raise DataError(
            f"--model-outputs {args.model_outputs} / --reference-outputs {args.reference_outputs}: {e}"
        ) from e
    specs = {  # typed once: a misspelt key fails here, naming it, before any judge is built
        g: JudgeSpec.from_dict(spec, "--judge-config" + ("" if g == "all" else f".{g}"))
        for g, spec in judge_groups(load_judge_config(args.judge_config)).items()
    }
    groups_of = [group_of(r, specs) for r in model]
    judges = {name: make_judge(spec) for name, spec in specs.items() if name in groups_of}
    cache = JudgmentCache(args.cache) if args.cache else None
    result = evaluate(items, judges, groups_of, cache)
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
