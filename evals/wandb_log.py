"""The shared evaluation layer on W&B: one evaluation run per model, one leaderboard run, one run per judge card.

Each model's run (group = its paper, job_type eval) holds every shared-benchmark number as the leaderboard reports it
(leaderboard.csv: the same columns, CIs included) plus every scalar of its score files (`<bench>/<key>`), a sample
of its AlpacaEval answers with the judge's preference as a Table, and its weights as a reference artifact (nothing
copied). The leaderboard and each judge card are Tables and `table` artifacts. When `wandb.mode` is online, the W&B
Reports (one per paper, one for the leaderboard; alignrepro/wandb_report.py) are saved too.

Reads results/evals/<tier>/{leaderboard.csv, scores/<key>/<bench>.json, answers/<key>/alpacaeval.jsonl} and
results/judges/<name>.json; writes a manifest of the runs (--out). CLI: `python -m alignrepro.evals.wandb_log --help`.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path
from typing import Any

from alignrepro.io import atomic_write_json, content_sha256, read_json, read_jsonl
from alignrepro.wandb_runs import WandbSettings, log_tables, model_artifact, start_run, table, tables_artifact

log = logging.getLogger(__name__)
SKIP = {"annotations", "provenance", "cache", "data", "spec", "labelled_set"}  # per-item or bookkeeping, not scores
MODEL_META = ("name", "kind", "dtype", "adapter_sha256", "weights_sha256", "base", "base_identity", "revision")


def scalars(d: Any, prefix: str = "") -> dict[str, float]:
    """Every number in a score file, keyed by its path (`groups/all/win_rate`); per-item lists and bookkeeping left
    out. A [low, high] interval becomes `<key>_low` / `<key>_high`."""
    out: dict[str, float] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            if k in SKIP:
                continue
            out |= scalars(v, f"{prefix}/{k}" if prefix else str(k))
    elif isinstance(d, int | float):  # bools too (1.0 / 0.0)
        out[prefix] = float(d)
    elif isinstance(d, list) and len(d) == 2 and all(isinstance(x, int | float) for x in d):
        out[f"{prefix}_low"], out[f"{prefix}_high"] = float(d[0]), float(d[1])
    return out


def parse_cell(v: str) -> Any:
    """A leaderboard.csv cell back to its value: numbers, JSON lists/dicts (to_csv wrote them as JSON), else text."""
    if v == "":
        return None
    try:
        return json.loads(v)
    except ValueError:
        return v


def read_board(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8", newline="") as f:
        return [{k: parse_cell(v) for k, v in row.items()} for row in csv.DictReader(f)]


def board_numbers(row: dict[str, Any]) -> dict[str, float]:
    """The leaderboard row's numbers (its columns as they are named there) for the run summary: its top-level numbers
    and [low, high] intervals as `scalars` reads them, flags (bools) and nested cells left out."""
    return scalars({k: v for k, v in row.items() if not isinstance(v, bool | dict)})


def sample_generations(answers: Path, scores: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """n AlpacaEval answers spread evenly over the prompt set (deterministic), with the judge's preference for each
    (1 = the reference answer, 2 = this model, 1.5 = a tie; None: not judged)."""
    if n <= 0 or not answers.is_file():
        return []
    rows = sorted(read_jsonl(answers), key=lambda r: str(r.get("id")))
    picked = rows[:: max(1, len(rows) // n)][:n]
    pref = {a.get("id"): a.get("preference") for a in (scores.get("annotations") or []) if isinstance(a, dict)}
    return [
        {
            "id": r.get("id"),
            "instruction": r.get("instruction"),
            "input": r.get("input"),
            "output": r.get("output"),
            "judge_preference": pref.get(r.get("id")),
        }
        for r in picked
    ]


def model_group(meta: dict[str, Any]) -> str:
    return "base" if meta.get("paper") in (None, "-") else str(meta["paper"])


def log_model(settings: WandbSettings, spec: dict[str, Any], key: str, meta: dict[str, Any], row: dict | None) -> str:
    root = Path(spec["root"])
    scores = {b: read_json(root / "scores" / key / f"{b}.json") for b in spec["benches"]}
    inputs = {f"{key}/{b}": content_sha256(root / "scores" / key / f"{b}.json") for b in spec["benches"]}
    prov = (scores.get("alpacaeval") or {}).get("provenance") or {}
    config = {"model": key, **meta, "tier": spec["tier"], "judge": spec.get("judge"), "inputs_sha256": inputs,
              "provenance": prov}  # fmt: skip
    run = start_run(settings, model_group(meta), key, "eval", config=config, name=key)
    summary = board_numbers(row or {})
    for bench, s in scores.items():
        summary |= {f"{bench}/{k}": v for k, v in scalars(s).items()}
    run.summary.update(summary)
    gens = sample_generations(root / "answers" / key / "alpacaeval.jsonl", scores.get("alpacaeval") or {},
                              settings.generations)  # fmt: skip
    if gens:
        run.log({"generations": table(gens)})
    model_json = Path(meta["dir"]) / "model.json"
    if model_json.is_file():
        ident = {k: v for k, v in read_json(model_json).items() if k in MODEL_META}
        run.log_artifact(model_artifact(key, Path(meta["dir"]), ident))
    rid = run.id
    run.finish()
    return rid


def card_rows(card: dict[str, Any]) -> list[dict[str, Any]]:
    """A judge card as rows: per use (pairwise, rating), the overall agreement and each kind of pair's."""
    rows = []
    for use in ("pairwise", "rating"):
        part = card.get(use)
        if not isinstance(part, dict):
            continue
        kinds = {"all": part, **(part.get("by_kind") or {})}
        for kind, m in kinds.items():
            ci = m.get("ci95") or [None, None]
            rows.append({"use": use, "kind": kind, "agreement": m.get("agreement"), "ci95_low": ci[0],
                         "ci95_high": ci[1], "n": m.get("n")})  # fmt: skip
    return rows


def log_all(settings: WandbSettings, spec: dict[str, Any], judges_dir: Path) -> list[dict[str, str]]:
    root = Path(spec["root"])
    board = read_board(root / "leaderboard.csv")
    by_key = {r.get("model"): r for r in board}
    runs = []
    for key in sorted(spec["models"]):
        meta = spec["models"][key]
        rid = log_model(settings, spec, key, meta, by_key.get(key))
        runs.append({"id": rid, "group": model_group(meta), "job_type": "eval", "name": key})
    prov = read_json(root / "provenance.json") if (root / "provenance.json").is_file() else {"tier": spec["tier"]}
    files = [root / f for f in ("leaderboard.csv", "leaderboard.md", "leaderboard.png", "provenance.json")]
    rid = log_tables(settings, "leaderboard", "leaderboard", {"leaderboard": board}, prov, "leaderboard", files,
                     images={"leaderboard_plot": root / "leaderboard.png"})  # fmt: skip
    runs.append({"id": rid, "group": "leaderboard", "job_type": "leaderboard", "name": "leaderboard"})
    for name in spec["cards"]:
        card = read_json(judges_dir / f"{name}.json")
        run = start_run(settings, "judges", name, "judge-card", config={"provenance": card.get("provenance") or {}},
                        name=f"judge card: {name}")  # fmt: skip
        run.summary.update(scalars({k: v for k, v in card.items() if k in ("pairwise", "rating", "dollars_per_1k")}))
        run.log({"judge_card": table(card_rows(card))})
        files = [judges_dir / f"{name}.json", judges_dir / f"{name}.md"]
        run.log_artifact(tables_artifact(f"judge-card-{name}", {"judge_card": card_rows(card)}, files,
                                         judge_id=card.get("judge_id")))  # fmt: skip
        runs.append({"id": run.id, "group": "judges", "job_type": "judge-card", "name": name})
        run.finish()
    return runs


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m alignrepro.evals.wandb_log", description=__doc__.split("\n")[0])
    ap.add_argument("--spec-json", required=True, help="tier, root, models {key: meta}, benches, cards, judge")
    ap.add_argument("--wandb-json", required=True, help="config `wandb` (mode, project, dir, entity, generations)")
    ap.add_argument("--judges-dir", type=Path, default=Path("results/judges"))
    ap.add_argument("--out", type=Path, required=True, help="manifest of the runs logged (JSON)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    spec = json.loads(args.spec_json)
    settings = WandbSettings.from_dict(json.loads(args.wandb_json))
    runs = log_all(settings, spec, args.judges_dir) if settings.enabled else []
    reports = []
    if settings.mode == "online":
        from alignrepro.evals.leaderboard_stats import RANKABLE
        from alignrepro.wandb_report import build_reports, publish

        reports = publish(build_reports(settings, spec["tier"], metrics=list(RANKABLE)))
    manifest = {"tier": spec["tier"], "mode": settings.mode, "project": settings.project,
                "dir": str(settings.runs_dir), "runs": runs, "reports": reports}  # fmt: skip
    atomic_write_json(args.out, manifest)
    log.info("%d W&B runs (%s, project %s) under %s", len(runs), settings.mode, settings.project, settings.runs_dir)
    return manifest


if __name__ == "__main__":
    main()
