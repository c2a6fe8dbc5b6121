"""LAB's tables: SDG keep-rates per leaf and stage, the phases with replay and checkpoint selection, and the Table 3
analogue (base / LAB phased / stacked, judge-free metrics with 95% percentile-bootstrap CIs and paired differences)
beside the paper's reported Table 3 (as reported, never in the same table). A plot, a summary, W&B tables.

Spec JSON (--spec-json), all paths as written by the LAB rules:
  tier, seed, bootstrap     the tier; the seed (run and bootstrap); bootstrap resamples (default 2000)
  teacher, student          names shown in every table
  root                      the tier's results folder (W&B runs: config wandb.dir)
  sdg_stages                [stages.json of every leaf] (sdg.py)
  phase_manifest            manifest.json of phases.py
  selections                {phase: <phase>/selected.json} (select.py), phases among kt1, kt2, st, stacked
  evals                     {"base": path, "lab": path, "stacked": path | null} (evaluate.py JSONs); a stacked entry
                            that is absent, null or not on disk is "not run (target <ablation_target>)"
  ablation_target           optional, default "lab_ablations"
  leaderboard               optional {model key: {"mtbench": path, "lmeval": path}}: the shared leaderboard's score
                            files; a model without them says "see leaderboard"
  seed_evals                optional {model key: [evaluate.py JSON per seed]}: with 2 or more, the row adds each
                            metric's mean and t-interval over seeds (alignrepro.stats.seed_columns)

Outputs in --out-dir: sdg_keep_rates.md, phases.md, table3.md, table3.csv, table3_differences.csv, reported.md,
table3.png, summary.md, provenance.json. `python -m alignrepro.methods.lab.aggregate --help`
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from alignrepro.io import atomic_write_json, atomic_write_text, content_sha256, read_json, sha256_file
from alignrepro.methods.lab.phases import LABELS
from alignrepro.provenance import provenance
from alignrepro.reporting import bars_or_missing, log_to_wandb, md_table, plot_value, to_csv
from alignrepro.stats import bootstrap_mean_ci, paired_compare, seed_columns

MODELS = {"base": "base (the student before LAB)", "lab": "LAB phased (ST's selected checkpoint)",
          "stacked": "stacked (one SFT on all data)"}  # fmt: skip
# metric (= its per-item key in the evaluation JSON) -> (label, per-item key, higher is better)
METRICS = {
    "mmlu_branch": ("MMLU-branch acc", "mmlu_branch", True),
    "oracle": ("oracle acc (foundational)", "oracle", True),
    "heldout_nll": ("held-out NLL", "heldout_nll", False),
}
PAIRS = (("lab", "base"), ("lab", "stacked"))
COLORS = ("tab:grey", "tab:blue", "tab:orange")  # base, lab, stacked
PHASE_ORDER = ("kt1", "kt2", "st", "stacked")
# Table 3 column -> lm-eval tasks tried in order with their metric (GSM8K-100 stands in where GSM8K has no data);
# a cell names what was scored by the task's label (e.g. "MMLU (stratified 114 of 14,042, 0-shot)")
LMEVAL = {
    "mmlu": (("mmlu", "acc"),),
    "arc": (("arc_challenge", "acc_norm"),),
    "hellaswag": (("hellaswag", "acc_norm"),),
    "winogrande": (("winogrande", "acc"),),
    "gsm8k": (("gsm8k", "exact_match"), ("gsm8k_100", "exact_match")),
}
BOARD_COLS = ("mt_bench", *LMEVAL)


def fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def fmt_diff(x: float | None) -> str:
    return "n/a" if x is None else (f"{x:+.1e}" if 0 < abs(x) < 1e-3 else f"{x:+.3f}")


def header(spec: dict[str, Any], note: str = "judge-free metrics (no LLM judge) unless a column says otherwise") -> str:
    who = f"teacher `{spec['teacher']}`, student `{spec['student']}`"
    return f"Tier **{spec['tier']}**, seed {spec['seed']}, {who}; {note}.\n"


# ---- SDG and phases ------------------------------------------------------------------------------------------------


def sdg_md(spec: dict[str, Any], reports: list[dict[str, Any]]) -> str:
    from alignrepro.methods.lab.sdg import keep_rate_table

    per_leaf = [[r["leaf"], r["kind"], r["pipeline"], r["stages"][0]["rows_in"] if r["stages"] else "",
                 "failed" if r.get("records") is None else r["records"]] for r in reports]  # fmt: skip
    return "\n".join([
        "# LAB SDG: rows kept per leaf and stage (InstructLab's pipelines)\n",
        header(spec, "the filters are the teacher's own judgments with InstructLab's prompts (no evaluation judge)"),
        md_table(["leaf", "kind", "pipeline", "pipeline input rows", "records out"], per_leaf),
        "\n## Per stage (out/in > 1 for generators; a filter's keep-rate is out/in)\n", keep_rate_table(reports),
    ])  # fmt: skip


def phase_rows(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key in PHASE_ORDER:
        ph = manifest["phases"].get(key)
        if ph:
            rows.append({"phase": ph["label"], "records": ph["count"], "own": ph["own_count"],
                         "replay": ph["replay_counts"], "kinds": ph["kinds"]})  # fmt: skip
    return rows


def selection_rows(selections: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"phase": LABELS[key], "metric": s["metric"], "better": "higher" if s["higher_is_better"] else "lower",
             "scores": s["scores"], "selected_epoch": s["selected_epoch"], "tolerance": s["tolerance"]}
            for key in PHASE_ORDER if (s := selections.get(key))]  # fmt: skip


def phases_md(spec: dict[str, Any], manifest: dict[str, Any], sel: list[dict[str, Any]]) -> str:
    split = manifest["split"]
    data = [[r["phase"], r["records"], r["own"], ", ".join(f"{k}: {v}" for k, v in r["replay"].items()) or "-",
             ", ".join(f"{k} {v}" for k, v in r["kinds"].items())] for r in phase_rows(manifest)]  # fmt: skip
    picks = [[r["phase"], f"{r['metric']} ({r['better']} is better)",
              ", ".join(f"epoch {e}: {fmt(v, 4)}" for e, v in r["scores"].items()),
              r["selected_epoch"], r["tolerance"]] for r in sel]  # fmt: skip
    return "\n".join([
        "# LAB phases (paper Table 1) and checkpoint selection (§3.3)\n", header(spec, "judge-free selection metrics"),
        f"Short/long split of knowledge answers: rule `{split['rule']}`, threshold {split['threshold_tokens']:g} "
        f"tokens ({split['at_threshold']}); {split['knowledge_short']} short, {split['knowledge_long']} long. "
        f"Replay fraction {manifest['replay_fraction']}, seed {manifest['seed']}.\n",
        md_table(["phase", "training records", "own", "replay (from phase: records)", "kinds"], data),
        "\n## Checkpoint selection (best score; ties within the tolerance go to the earlier epoch)\n",
        md_table(["phase", "metric", "score per epoch", "selected epoch", "tolerance"], picks) if picks
        else "No selection files given.\n",
    ])  # fmt: skip


# ---- Table 3 analogue ----------------------------------------------------------------------------------------------


def load_evals(spec: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
    """key -> evaluation JSON, or None for an ablation that was not run (base and lab must exist)."""
    out: dict[str, dict[str, Any] | None] = {}
    for key in MODELS:
        path = spec["evals"].get(key)
        out[key] = read_json(path) if key != "stacked" or (path and Path(path).is_file()) else None
    return out


def _lmeval_cell(scores: dict[str, Any], col: str) -> tuple[float | None, str]:
    from alignrepro.evals.verifiable.accuracy import wilson

    tasks = scores.get("tasks", {})
    for task, metric in LMEVAL[col]:
        t = tasks.get(task) or {}
        if t.get("status", "ok") == "ok" and t.get(metric) is not None:
            label = "" if task == LMEVAL[col][0][0] else f" ({task}, {t.get('num_fewshot', '?')}-shot)"
            label = f" ({t['label']})" if t.get("label") else label
            n = t.get("n")  # a Wilson interval over the scored items (an accuracy of n items)
            ci = wilson(round(t[metric] * n), n) if isinstance(n, int) and n > 0 else None
            ci_text = f" [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else " (no CI: no item count)"
            return 100 * t[metric], f"{100 * t[metric]:.2f}{ci_text}{label}"
    first = tasks.get(LMEVAL[col][0][0])
    return None, first.get("status", "no value") if first else "not run"


def board_cells(spec: dict[str, Any], key: str, ran: bool) -> dict[str, tuple[float | None, str]]:
    """Table 3's MT-Bench / lm-eval columns from the shared leaderboard's score files."""
    if not ran:
        return dict.fromkeys(BOARD_COLS, (None, f"not run (target {spec.get('ablation_target', 'lab_ablations')})"))
    files = (spec.get("leaderboard") or {}).get(key) or {}
    cells = dict.fromkeys(BOARD_COLS, (None, "see leaderboard"))
    mt = files.get("mtbench")
    if mt and Path(mt).is_file():
        from alignrepro.evals.leaderboard_stats import mtbench_cis

        s = read_json(mt)
        flag = " ⚠ heuristic judge" if s.get("heuristic") else ""
        ci, why = mtbench_cis(s, spec["seed"])["mtbench_score"]  # bootstrap over the per-turn ratings
        ci_text = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f" (no CI: {why})"
        cells["mt_bench"] = (s.get("score"), f"{fmt(s.get('score'), 2)}{ci_text} (judge `{s.get('judge_id')}`{flag})")
    lm = files.get("lmeval")
    if lm and Path(lm).is_file():
        s = read_json(lm)
        cells |= {col: _lmeval_cell(s, col) for col in LMEVAL}
    return cells


def model_rows(spec: dict[str, Any], evals: dict[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    rows = []
    for key, label in MODELS.items():
        ev = evals[key]
        row: dict[str, Any] = {"model": key, "label": label, "run": ev is not None}
        for m, (_, item_key, _) in METRICS.items():
            items = list((ev or {}).get("per_item", {}).get(item_key, {}).values())
            row[m] = sum(items) / len(items) if items else None
            row[f"{m}_ci"] = bootstrap_mean_ci(items, spec.get("bootstrap", 2000), spec["seed"]) if items else None
            row[f"{m}_n"] = len(items)
        seeds = (spec.get("seed_evals") or {}).get(key)  # [evaluation JSON per seed]: mean and t-CI over seeds
        if ev is not None and seeds and len(seeds) > 1:
            row |= seed_columns(seeds, {m: f"metrics.{m}" for m in METRICS})
        metrics = (ev or {}).get("metrics", {})
        row["mmlu_branch_majority"] = metrics.get("mmlu_branch_majority")
        row["mmlu_branch_chance"] = metrics.get("mmlu_branch_chance")
        for col, (value, _) in board_cells(spec, key, ev is not None).items():
            row[col] = value
        ident = (ev or {}).get("model", {})
        row["model_hash"] = ident.get("adapter_sha256") or ident.get("weights_sha256")
        row |= {"tier": spec["tier"], "seed": spec["seed"], "teacher": spec["teacher"], "student": spec["student"]}
        rows.append(row)
    return rows


def differences(spec: dict[str, Any], evals: dict[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    out = []
    for a, b in PAIRS:
        for m, (label, item_key, higher) in METRICS.items():
            row = {"a": a, "b": b, "metric": m, "label": label}
            if evals[a] is None or evals[b] is None:
                out.append(row | {"diff": None, "ci": None, "verdict": "not run", "n": 0, "n_only_one_side": 0})
                continue
            # + exact McNemar (accuracies) or sign test (NLL) p, and the minimum detectable effect at this n
            d = paired_compare(evals[a]["per_item"][item_key], evals[b]["per_item"][item_key],
                               spec.get("bootstrap", 2000), spec["seed"])  # fmt: skip
            better = None if not d["excludes_zero"] else (d["diff"] > 0) == higher
            verdict = {True: f"{a} better", False: f"{b} better", None: "no difference shown"}[better]
            out.append(row | d | {"verdict": verdict if d["n"] else "no common items"})
    return out


def _test_cell(d: dict[str, Any]) -> str:
    if d.get("p_value") is None:
        return "–"
    mde = "n/a" if d.get("mde") is None else f"{d['mde']:.3g}"
    return f"{d['test']} p={d['p_value']:.2g}; MDE {mde}" + (f" ({d['mde_why']})" if d.get("mde_why") else "")


def _cell(r: dict[str, Any], m: str) -> str:
    if not r["run"]:
        return "not run"
    ci, seeds = r[f"{m}_ci"], ""
    if r.get("n_seeds", 1) > 1:
        sci = r[f"{m}_seeds_ci"]
        seeds = f"; {r['n_seeds']} seeds: {fmt(r[f'{m}_seeds_mean'])}"
        seeds += f" [{fmt(sci[0])}, {fmt(sci[1])}]" if sci else ""
    return fmt(r[m]) + (f" [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "") + f" (n={r[f'{m}_n']}){seeds}"


def table3_md(spec: dict[str, Any], rows: list[dict[str, Any]], diffs: list[dict[str, Any]], cells: dict,
              reported: list[dict[str, Any]]) -> str:  # fmt: skip
    base = next(r for r in rows if r["model"] == "base")
    ablation = spec.get("ablation_target", "lab_ablations")
    judge_free = [[r["label"], *((_cell(r, m) if r["run"] else f"not run (target {ablation})") for m in METRICS),
                   (r["model_hash"] or "")[:12]] for r in rows]  # fmt: skip
    board = [[r["label"], *(cells[r["model"]][c][1] for c in BOARD_COLS)] for r in rows]
    diff_rows = [[f"{d['a']} − {d['b']}", d["label"], fmt_diff(d["diff"]) + (
        f" [{fmt_diff(d['ci'][0])}, {fmt_diff(d['ci'][1])}]" if d["ci"] else ""), d["n"], d["n_only_one_side"],
        _test_cell(d), d["verdict"]] for d in diffs]  # fmt: skip
    return "\n".join([
        "# LAB Table 3 analogue: base vs LAB phased vs stacked\n", "## Reproduced\n", header(spec),
        md_table(["model", *(f"{METRICS[m][0]} {'↑' if METRICS[m][2] else '↓'} [95% CI]" for m in METRICS),
                  "model hash"], judge_free),  # fmt: skip
        f"MMLU-branch baselines on the same items: majority answer {fmt(base['mmlu_branch_majority'])} (always "
        f"the most frequent gold letter), chance {fmt(base['mmlu_branch_chance'])}. Scored 0-shot by the "
        "log-likelihood of each answer letter (lm-eval MMLU format).\n",
        "\n### Paired differences (same items; 95% percentile-bootstrap CI; exact McNemar for accuracies, sign test "
        "for NLL; MDE = minimum detectable effect at alpha .05, power .8)\n",
        md_table(["a − b", "metric", "difference [CI]", "items", "items on one side only", "test p; MDE", "verdict"],
                 diff_rows),
        "\n### Shared leaderboard columns (MT-Bench is judged: see the judge card; lm-eval values in %)\n",
        md_table(["model", "MT-Bench", "MMLU", "ARC", "HellaSwag", "Winogrande", "GSM8K"], board),
        "\n## Reported (paper; 7B/13B models, Mixtral-8x7B teacher, GPT-4 judge: compare directions, not "
        "values)\n",
        reported_table3(reported),
    ])  # fmt: skip


# ---- reported ------------------------------------------------------------------------------------------------------


def _num(v: Any) -> Any:
    """A reported number as printed in the paper: 2 decimals for scores, 2.0e-5 for learning rates."""
    if isinstance(v, float):
        return f"{v:.1e}".replace("e-0", "e-") if 0 < abs(v) < 1e-3 else f"{v:.2f}"
    return "-" if v is None else v


def _table(reported: list[dict[str, Any]], table_id: str) -> dict[str, Any]:
    return next(t for t in reported if t["table_id"] == table_id)


def reported_table3(reported: list[dict[str, Any]]) -> str:
    t = _table(reported, "table3")
    sym = t["footnote_symbols"]
    cols = [c["name"] for c in t["columns"]]
    body = []
    for r in t["rows"]:
        cells = [_num(r[c]) for c in cols]
        cells[cols.index("mt_bench")] = f"{r['mt_bench']:.2f} {sym[r['mt_bench_mark']]}"
        body.append([*cells, t["mt_bench_source"][r["mt_bench_mark"]], r.get("note", "")])
    settings = "; ".join(f"{c['name']}: {c['setting']}" for c in t["columns"] if c.get("setting"))
    notes = "\n".join(f"- {n}" for n in t["variants_not_in_paper"])
    return "\n".join([
        f"**Table 3** ({t['source']}): {t['caption']}\n",
        md_table([*cols, "MT-Bench source", "note"], body),
        "\n".join(f"{sym[k]} {v}" for k, v in t["footnotes"].items()) + "\n",
        f"Settings: {settings}.\n", f"Provenance: {t['provenance']}.\n",
        f"Model-card variants (not the paper's; never in its rows):\n{notes}\n",
    ])  # fmt: skip


def reported_md(reported: list[dict[str, Any]]) -> str:
    out = ["# LAB: reported tables and settings (as reported; arXiv 2403.01081)\n", reported_table3(reported)]
    for tid in ("table1", "table2", "text_sec4_data"):
        t = _table(reported, tid)
        cols = t.get("columns") or list(t["rows"][0])
        out.append(f"\n**{tid}** ({t['source']}){': ' + t['caption'] if t.get('caption') else ''}\n")
        out.append(md_table(cols, [[_num(r[c]) for c in cols] for r in t["rows"]]))
        out += [f"Note: {t[k]}\n" for k in ("note", "mapping_note") if t.get(k)]
    return "\n".join(out)


# ---- plot, summary -------------------------------------------------------------------------------------------------


def plot(rows: list[dict[str, Any]], spec: dict[str, Any], path: Path) -> Any:
    """Writes the PNG and returns the (closed) Figure; a model not run or a metric not measured shows n/a."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 3.4))
    xs = list(range(len(rows)))
    for ax, (m, (label, _, higher)) in zip(axes, METRICS.items(), strict=True):
        present = [c for c, r in zip(COLORS, rows, strict=True) if plot_value(r[m]) is not None]
        bars_or_missing(ax, xs, [r[m] for r in rows], 0.6, ci=[r[f"{m}_ci"] for r in rows], capsize=3, color=present)
        ax.set_xlim(-0.6, len(rows) - 0.4)  # keep the slot (and "n/a") of a model without a bar in view
        if m == "mmlu_branch":
            for key, style in (("mmlu_branch_majority", "--"), ("mmlu_branch_chance", ":")):
                value = rows[0][key]
                if value is not None:
                    ax.axhline(value, ls=style, color="black", lw=0.8, label=key.removeprefix("mmlu_branch_"))
            ax.legend(fontsize=7)
        ax.set_xticks(xs, [r["model"] + ("" if r["run"] else "\n(not run)") for r in rows])
        ax.set_title(f"{label} ({'higher' if higher else 'lower'} is better)", fontsize=8)
    fig.suptitle(f"LAB Table 3 analogue, tier {spec['tier']}, seed {spec['seed']} (95% bootstrap CIs; judge-free)",
                 fontsize=9)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig


def summary_md(spec: dict[str, Any], rows: list[dict[str, Any]], diffs: list[dict[str, Any]], out: Path) -> str:
    lines = [f"LAB at tier {spec['tier']} (seed {spec['seed']}, teacher {spec['teacher']}, student "
             f"{spec['student']}; judge-free):"]  # fmt: skip
    for r in rows:
        vals = ", ".join(f"{METRICS[m][0]} {fmt(r[m])}" for m in METRICS) if r["run"] else "not run"
        lines.append(f"  {r['model']}: {vals}")
    for d in diffs:
        ci = f" [{fmt_diff(d['ci'][0])}, {fmt_diff(d['ci'][1])}]" if d["ci"] else ""
        lines.append(f"  {d['a']} − {d['b']}: {d['label']} {fmt_diff(d['diff'])}{ci} ({d['verdict']})")
    lines.append(f"  tables: {out}/table3.md, {out}/phases.md, {out}/sdg_keep_rates.md, {out}/reported.md; "
                 f"plot: {out}/table3.png")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m alignrepro.methods.lab.aggregate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--spec-json", required=True, help="the tables' spec (keys above)")
    p.add_argument("--reported", type=Path, required=True, help="methods/lab/reported.yaml")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--wandb-json", default='{"mode": "disabled", "project": "alignrepro"}', help="W&B settings")
    args = p.parse_args(argv)
    spec = json.loads(args.spec_json)
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    reported = yaml.safe_load(args.reported.read_text(encoding="utf-8"))
    stages = [read_json(s) for s in spec["sdg_stages"]]
    manifest = read_json(spec["phase_manifest"])
    sel = selection_rows({k: read_json(v) for k, v in (spec.get("selections") or {}).items()})
    evals = load_evals(spec)
    rows, diffs = model_rows(spec, evals), differences(spec, evals)
    cells = {k: board_cells(spec, k, evals[k] is not None) for k in MODELS}
    inputs = [*spec["sdg_stages"], spec["phase_manifest"], *(spec.get("selections") or {}).values(),
              *(v for v in spec["evals"].values() if v and Path(v).is_file())]  # fmt: skip
    prov = provenance(tier=spec["tier"], config=spec, seed=spec["seed"], reported_sha256=sha256_file(args.reported),
                      inputs={str(i): content_sha256(i) for i in inputs})  # fmt: skip
    atomic_write_json(out / "provenance.json", prov)
    atomic_write_text(out / "sdg_keep_rates.md", sdg_md(spec, stages))
    atomic_write_text(out / "phases.md", phases_md(spec, manifest, sel))
    atomic_write_text(out / "table3.md", table3_md(spec, rows, diffs, cells, reported))
    atomic_write_text(out / "table3.csv", to_csv(rows))
    atomic_write_text(out / "table3_differences.csv", to_csv(diffs))
    atomic_write_text(out / "reported.md", reported_md(reported))
    plot(rows, spec, out / "table3.png")
    atomic_write_text(out / "summary.md", summary_md(spec, rows, diffs, out))
    stage_rows = [{"leaf": r["leaf"], "pipeline": r["pipeline"], **s} for r in stages for s in r["stages"]]
    tables = {"lab_table3": rows, "lab_table3_differences": diffs, "lab_sdg_keep_rates": stage_rows,
              "lab_phases": phase_rows(manifest), "lab_selection": sel}  # fmt: skip
    # row: the out folder's name (tables / ablation), so the two aggregate steps are two W&B runs
    log_to_wandb(json.loads(args.wandb_json), Path(spec["root"]), spec["tier"], {k: v for k, v in tables.items() if v},
                 prov, paper="lab", row=out.name)  # fmt: skip


if __name__ == "__main__":
    main()
