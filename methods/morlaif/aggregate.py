"""MORLAIF's figures regenerated as tables and plots, each beside the paper's reported values (never mixed).

  figures   A (PM accuracy per principle), B (combined accuracy per scalarizer), C (MORLAIF vs single-PM win rate),
            D (human crowdworkers: reported only), F (principle agreement), G (principle ablation), plus the weights,
            the feedback model's diagnostics and the PPO runs, and a summary that checks the paper's claims
  figure-e  the scalarizer win-rate matrix (a separate target at the tiny tier: it needs every PPO arm)

Every reproduced number carries tier, model, judge / feedback model, seed and data hash (the CSV has one column
each); reported numbers come from reported.yaml with their provenance note.

`python -m alignrepro.methods.morlaif.aggregate {figures,figure-e} --help`
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import yaml

from alignrepro.evals.judges.lines import card_line
from alignrepro.evals.verifiable.accuracy import wilson
from alignrepro.io import atomic_write_json, atomic_write_text, content_sha256, read_json, read_jsonl, sha256_file
from alignrepro.provenance import provenance
from alignrepro.reporting import (
    MISSING_LABEL,
    bars_or_missing,
    judge_footer,
    log_to_wandb,
    md_table,
    plot_value,
    to_csv,
)
from alignrepro.stats import paired_compare

OBJECTIVE_NAMES = {  # reproduced key -> reported row name
    "linear": "linear",
    "max_median": "max_median",
    "max_min": "max_min",
    "soft_max_min": "soft_max_min",
    "lower_quantile": "lower_third_quantile",
    "bernoulli_nash": "bernoulli_nash",
    "uncertainty_weighted": None,  # not in the paper's figure B
    "single_pm_rlaif_baseline": "single_pm_rlaif_baseline",
    "single_principle_morlaif_baseline": "single_principle_morlaif_baseline",
}
MATRIX_NAMES = {"lower_quantile": "lower_third_quantile", "single_pm": "single_pm"}
SINGLE_PM = "single_pm_rlaif_baseline"  # figure B's reference: every scalarizer is compared with it, paired


def f3(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def ci3(c: list[float] | None) -> str:
    return "" if not c else f" [{c[0]:.3f}, {c[1]:.3f}]"


def pct_ci(wr: float | None, c: list[float] | None) -> str:
    return "n/a" if wr is None else f"{wr:.1f}" + ("" if not c else f" [{c[0]:.1f}, {c[1]:.1f}]")


def load_reported(path: Path) -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {t["id"]: t | {"source_note": doc["source_note"]} for t in doc["tables"]}


def reported_cells(table: dict[str, Any], row: str | None) -> list[str]:
    values = table["rows"].get(row) if row else None
    return [f"{v:g}" if isinstance(v, float) else str(v) for v in values] if values else ["–"] * len(table["columns"])


class Base:
    """One policy/PM base's results folder."""

    def __init__(self, root: Path, base: str) -> None:
        self.name, self.dir = base, root / base
        a = self.dir / "analysis"
        self.weights = read_json(a / "weights.json")
        self.a = read_json(a / "fig_a_principle_accuracy.json")
        self.b = read_json(a / "fig_b_objective_accuracy.json")
        self.f = read_json(a / "fig_f_principle_agreement.json")
        self.g = read_json(a / "fig_g_principle_ablation.json")
        c = self.dir / "eval" / "figure_c.json"
        self.c = read_json(c) if c.is_file() else None

    def ppo_runs(self, arms: list[str]) -> dict[str, dict[str, Any]]:
        out = {}
        for arm in arms:
            log_path = self.dir / "ppo" / arm / "train_log.jsonl"
            if log_path.is_file():
                rows = read_jsonl(log_path)
                out[arm] = {"steps": len(rows), "first": rows[0] if rows else {}, "last": rows[-1] if rows else {}}
        return out


def figure_a_md(bases: list[Base], rep: dict[str, Any]) -> tuple[str, list[dict]]:
    t = rep["fig_principle_accuracy"]
    principles = list(bases[0].a["principles"])
    header = ["PM", *[f"reproduced {b.name}" for b in bases], *[f"reported {c}" for c in t["columns"]]]
    body, csv_rows = [], []
    for p in principles:
        cells = []
        for b in bases:
            r = b.a["principles"].get(p, {})
            cells.append(f"{f3(r.get('accuracy'))}{ci3(r.get('ci95'))} (n={r.get('n', 0)})")
            csv_rows.append({"figure": "A", "row": p, "base": b.name, "value": r.get("accuracy"), "ci95": r.get("ci95"),
                             "n": r.get("n")})  # fmt: skip
        body.append([p, *cells, *reported_cells(t, p)])
    return md_table(header, body), csv_rows


def vs_single_pm(b: Base, key: str, seed: int) -> dict[str, Any]:
    """A figure-B row minus the single-PM baseline on the same test pairs: paired bootstrap CI, exact McNemar p and
    the minimum detectable effect at that n (alignrepro.stats); {} without per-pair outcomes (or for the baseline)."""
    r = b.b["objectives"].get(key) or b.b["baselines"].get(key) or {}
    ref = b.b["baselines"].get(SINGLE_PM, {}).get("per_item")
    if key == SINGLE_PM or not ref or not r.get("per_item"):
        return {}
    d = paired_compare(r["per_item"], ref, 2000, seed, binary=True)
    return {"vs_single_pm": d["diff"], "vs_single_pm_ci95": d["ci"], "vs_single_pm_p": d["p_value"],
            "vs_single_pm_mde": d["mde"], "vs_single_pm_n": d["n"]}  # fmt: skip


def paired_b_cell(d: dict[str, Any]) -> str:
    if not d or d["vs_single_pm"] is None:
        return "–"
    mde = "n/a" if d["vs_single_pm_mde"] is None else f"{d['vs_single_pm_mde']:.3f}"
    return (f"{d['vs_single_pm']:+.3f}{ci3(d['vs_single_pm_ci95'])} p={d['vs_single_pm_p']:.2g}, MDE {mde} "
            f"(n={d['vs_single_pm_n']})")  # fmt: skip


def figure_b_md(bases: list[Base], rep: dict[str, Any], seed: int = 0) -> tuple[str, list[dict]]:
    t = rep["fig_objective_accuracy"]
    header = ["objective", *[f"reproduced {b.name}" for b in bases],
              *[f"− single PM, paired {b.name}" for b in bases], *[f"reported {c}" for c in t["columns"]]]  # fmt: skip
    body, csv_rows = [], []
    keys = list(bases[0].b["objectives"]) + list(bases[0].b["baselines"]) + ["multi_pm_ceiling"]
    for key in keys:
        cells, paired = [], []
        for b in bases:
            d = vs_single_pm(b, key, seed)
            paired.append(paired_b_cell(d))
            r = (
                b.b["objectives"].get(key)
                or b.b["baselines"].get(key)
                or (b.b["multi_pm_ceiling"] if key == "multi_pm_ceiling" else {})
            )
            cells.append(f"{f3(r.get('accuracy'))}{ci3(r.get('ci95'))} (n={r.get('n', 0)})")
            csv_rows.append({"figure": "B", "row": key, "base": b.name, "value": r.get("accuracy"),
                             "ci95": r.get("ci95"), "n": r.get("n"), **d})  # fmt: skip
        body.append([key, *cells, *paired, *reported_cells(t, OBJECTIVE_NAMES.get(key, key))])
    return md_table(header, body), csv_rows


def figure_c_md(bases: list[Base], rep: dict[str, Any], headline: str) -> tuple[str, list[dict]]:
    t = rep["fig_llm_winrate"]
    header = ["comparison", *[f"reproduced {b.name}" for b in bases], *[f"reported {c}" for c in t["columns"]]]
    cells, csv_rows = [], []
    for b in bases:
        cell = (b.c or {}).get("cells", {}).get("single_pm", {}).get(headline, {})
        same = f", {cell['n_identical']} identical answers" if cell.get("n_identical") else ""
        cells.append(f"{pct_ci(cell.get('win_rate'), cell.get('ci95'))} (n={cell.get('n', 0)}{same})")
        csv_rows.append({"figure": "C", "row": f"{headline}_vs_single_pm", "base": b.name,
                         "value": cell.get("win_rate"), "ci95": cell.get("ci95"), "n": cell.get("n")})  # fmt: skip
    row = [f"MORLAIF ({headline}) vs single-PM RLAIF, win rate %", *cells, *reported_cells(t, "morlaif_win_rate_pct")]
    return md_table(header, [row]), csv_rows


def figure_f_md(base: Base) -> tuple[str, list[dict]]:
    f = base.f
    body, csv_rows = [], []
    for name, row, ns in zip(f["rows"], f["agreement"], f["n"], strict=True):
        body.append([name, *(f3(v) for v in row)])
        for col, v, n in zip(f["columns"], row, ns, strict=True):
            ci = None if v is None or not n else [x / 100 for x in wilson(round(v * n), n)]  # agreement of n pairs
            csv_rows.append({"figure": "F", "row": name, "column": col, "base": base.name, "value": v, "n": n,
                             "ci95": ci})  # fmt: skip
    return md_table(["feedback of", *f["columns"]], body), csv_rows


def figure_g_md(bases: list[Base], rep: dict[str, Any]) -> tuple[str, list[dict]]:
    t = rep["fig_principle_ablation"]
    g0 = bases[0].g
    header = ["ablated k", "dropped last", *[f"{b.name} ceiling" for b in bases], *[f"{b.name} PMs" for b in bases],
              *[f"reported {r}" for r in t["rows"]]]  # fmt: skip
    body, csv_rows = [], []
    for i, k in enumerate(g0["k"]):
        rep_cells = [f3(vals[k]) if k < len(vals) else "–" for vals in t["rows"].values()]
        dropped = g0["rows"][i]["dropped"][-1] if g0["rows"][i]["dropped"] else "–"
        cis = {c: [f3(b.g[c][i]) + ci3(b.g["rows"][i][c].get("ci95")) for b in bases] for c in ("ceiling", "pm")}
        body.append([k, dropped, *cis["ceiling"], *cis["pm"], *rep_cells])
        for b in bases:
            for col in ("ceiling", "pm"):  # each accuracy with its Wilson CI and n (analysis.py)
                acc = b.g["rows"][i][col]
                csv_rows.append({"figure": "G", "row": f"k{k}", "column": col, "base": b.name, "value": b.g[col][i],
                                 "ci95": acc.get("ci95"), "n": acc.get("n")})  # fmt: skip
    return md_table(header, body), csv_rows


def weights_md(bases: list[Base]) -> str:
    principles = bases[0].weights["principles"]
    body = [[p, *(f"{b.weights['weights'][p]:+.3f}" for b in bases)] for p in principles]
    return md_table(["principle", *[f"weight ({b.weights['mode']}) {b.name}" for b in bases]], body)


def feedback_md(feedback_dir: Path, names: list[str]) -> str:
    body = []
    for p in names:
        s = read_json(feedback_dir / f"{p}.json")
        m = s["summary"]
        keys = ("orders_agree", "first_position_rate", "label_balance", "agreement_with_human_train",
                "agreement_with_human_test")  # fmt: skip
        body.append([p, m["n"], *(f3(m.get(k)) for k in keys)])
    head = ["principle", "pairs", "orders agree", "first-position share", "share preferring A",
            "agrees w/ label (train)", "agrees w/ label (test)"]  # fmt: skip
    return md_table(head, body)


def ppo_md(bases: list[Base], arms: list[str]) -> str:
    body = []
    for b in bases:
        for arm, run in b.ppo_runs(arms).items():
            first, last = run["first"], run["last"]
            last_keys = ("reward/scalarized", "objective/kl", "kl_coef", "response/length")
            body.append([b.name, arm, run["steps"], f3(first.get("reward/scalarized")),
                         *(f3(last.get(k)) for k in last_keys)])  # fmt: skip
    head = ["base", "arm", "PPO steps", "scalarized reward (first)", "(last)", "KL (last)", "KL coef", "length"]
    return md_table(head, body)


def claims(bases: list[Base], headline: str, seed: int = 0) -> list[str]:
    """The paper's headline claims, checked on the reproduced numbers (with the uncertainty that decides them)."""
    out = []
    for b in bases:
        objs = {k: v for k, v in b.b["objectives"].items() if v.get("accuracy") is not None}
        single = b.b["baselines"].get(SINGLE_PM, {})
        best = max(objs.values(), key=lambda r: r["accuracy"]) if objs else {}
        lin = objs.get("linear", {})
        ceil = b.b["multi_pm_ceiling"]
        d = vs_single_pm(b, "linear", seed) if lin else {}
        if lin and single.get("accuracy") is not None and d.get("vs_single_pm") is not None:
            lo, hi = d["vs_single_pm_ci95"] or (math.nan, math.nan)
            verdict = "holds" if lo > 0 else "reversed" if hi < 0 else "not resolved at this n"
            out.append(f"- {b.name}: multi-PM (linear) accuracy {f3(lin['accuracy'])} vs single-PM "
                       f"{f3(single['accuracy'])}; paired {paired_b_cell(d)} → {verdict}.")  # fmt: skip
        elif lin and single.get("accuracy") is not None:
            out.append(f"- {b.name}: multi-PM (linear) accuracy {f3(lin['accuracy'])} vs single-PM "
                       f"{f3(single['accuracy'])}: no per-pair outcomes, so no paired test.")  # fmt: skip
        if best and ceil.get("accuracy") is not None:
            out.append(f"- {b.name}: ceiling {f3(ceil['accuracy'])} vs best scalarizer {f3(best['accuracy'])} → "
                       f"{'holds' if ceil['accuracy'] >= best['accuracy'] else 'does not hold'}.")  # fmt: skip
        accs = [v["accuracy"] for v in objs.values()]
        if accs:
            out.append(f"- {b.name}: scalarizers' accuracies span {f3(min(accs))}–{f3(max(accs))} "
                       f"(paper: within ~0.01).")  # fmt: skip
        syc = b.weights["weights"].get("sycophancy")
        if syc is not None:
            out.append(f"- {b.name}: sycophancy weight {syc:+.3f} (paper: the only negative weight); negative weights: "
                       f"{', '.join(b.weights['negative']) or 'none'}.")  # fmt: skip
        cell = (b.c or {}).get("cells", {}).get("single_pm", {}).get(headline, {})
        if cell.get("win_rate") is not None:
            c = cell.get("ci95") or [math.nan, math.nan]
            resolved = c[0] > 50 or c[1] < 50
            same = f" ({cell['n_identical']} of {cell['n']} answers identical)" if cell.get("n_identical") else ""
            out.append(f"- {b.name}: MORLAIF ({headline}) wins {cell['win_rate']:.1f} % [{c[0]:.1f}, {c[1]:.1f}] "
                       f"against single-PM RLAIF (paper: 62–84 %) → "
                       f"{'resolved' if resolved else 'not distinguishable from 50 % at this n'}{same}.")  # fmt: skip
    return out


def figure_c_slots(names: list[str], reported_columns: list[str]) -> list[tuple[str, int | None, int | None]]:
    """Figure C's x slots as (tick label, index into the run's bases or None, index into the reported columns or
    None): a reported base shares the slot of the run base of the same model (gpt2-medium ~ gpt2_medium), else it
    gets a slot of its own after the run's bases, so each reported bar keeps its own base's label whatever the run's
    bases are."""
    slots: list[tuple[str, int | None, int | None]] = [(n, i, None) for i, n in enumerate(names)]
    by_key = {n.lower().replace("-", "_"): i for i, n in enumerate(names)}
    for j, col in enumerate(reported_columns):
        i = by_key.get(col.lower().replace("-", "_"))
        if i is None:
            slots.append((col, None, j))
        else:
            slots[i] = (names[i], i, j)
    return slots


def plot_figure_c(ax: Any, bases: list[Base], rep: dict[str, Any], headline: str) -> None:
    t = rep["fig_llm_winrate"]
    wr = [((bb.c or {}).get("cells", {}).get("single_pm", {}).get(headline, {}) or {}).get("win_rate") for bb in bases]
    reported = t["rows"]["morlaif_win_rate_pct"]
    slots = figure_c_slots([bb.name for bb in bases], t["columns"])  # the run's bases come first, in order
    rep_slots = [k for k, s in enumerate(slots) if s[2] is not None]
    bars_or_missing(ax, [i - 0.2 for i in range(len(bases))], wr, 0.4, label="reproduced")
    bars_or_missing(ax, [k + 0.2 for k in rep_slots], [reported[slots[k][2]] for k in rep_slots], 0.4, label="reported")
    ax.set_xticks(range(len(slots)), [s[0] for s in slots], rotation=30, fontsize=7)
    ax.axhline(50, color="grey", lw=0.7, ls=":")
    ax.set_title(f"C: MORLAIF ({headline}) vs single-PM, win rate %")
    ax.legend(fontsize=7)


def plot_figures(
    bases: list[Base], rep: dict[str, Any], headline: str, path: Path, judge: str = "", heuristic: bool = False
) -> Any:
    """Writes the PNG and returns the (closed) Figure, whose artists tests inspect. `judge`: figure C's judge line
    (the tables' card_line), named in the footer with the heuristic warning where the tables carry one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    b = bases[0]
    fig, ax = plt.subplots(2, 3, figsize=(17, 9.5))
    # A (a missing accuracy, e.g. n = 0, or a principle the paper does not report: "n/a", never a bar of height 0)
    ps = list(b.a["principles"])
    x = np.arange(len(ps))
    acc = [b.a["principles"][p]["accuracy"] for p in ps]
    bars_or_missing(ax[0, 0], list(x - 0.2), acc, 0.4, label=f"reproduced ({b.name})")
    ra = rep["fig_principle_accuracy"]["rows"]
    bars_or_missing(ax[0, 0], list(x + 0.2), [ra.get(p, [None])[0] for p in ps], 0.4, label="reported GPT-2-medium")
    ax[0, 0].set_xticks(x, ps, rotation=70, fontsize=7)
    ax[0, 0].set_title("A: PM accuracy vs feedback labels")
    ax[0, 0].axhline(0.5, color="grey", lw=0.7, ls=":")
    ax[0, 0].legend(fontsize=7)
    # B
    keys = list(b.b["objectives"]) + list(b.b["baselines"])
    vals = [(b.b["objectives"].get(k) or b.b["baselines"].get(k))["accuracy"] for k in keys]
    rb = rep["fig_objective_accuracy"]["rows"]
    x = np.arange(len(keys))
    bars_or_missing(ax[0, 1], list(x - 0.2), vals, 0.4, label="reproduced")
    rep_b = [rb.get(OBJECTIVE_NAMES.get(k) or "", [None])[0] for k in keys]
    bars_or_missing(ax[0, 1], list(x + 0.2), rep_b, 0.4, label="reported")
    if plot_value(b.b["multi_pm_ceiling"]["accuracy"]) is not None:  # no line at 0 for a ceiling not measured
        ax[0, 1].axhline(b.b["multi_pm_ceiling"]["accuracy"], color="C0", ls="--", lw=1, label="ceiling (reproduced)")
    ax[0, 1].axhline(0.825, color="C1", ls="--", lw=1, label="ceiling (reported)")
    ax[0, 1].set_xticks(x, keys, rotation=70, fontsize=7)
    ax[0, 1].set_title("B: combined accuracy vs human labels")
    ax[0, 1].legend(fontsize=7)
    # C
    plot_figure_c(ax[0, 2], bases, rep, headline)
    # F
    mat = np.array([[np.nan if v is None else v for v in row] for row in b.f["agreement"]])
    im = ax[1, 0].imshow(mat, vmin=0, vmax=1, cmap="viridis")
    ax[1, 0].set_xticks(range(len(b.f["columns"])), b.f["columns"], rotation=80, fontsize=6)
    ax[1, 0].set_yticks(range(len(b.f["rows"])), b.f["rows"], fontsize=6)
    ax[1, 0].set_title("F: agreement between principles' feedback")
    fig.colorbar(im, ax=ax[1, 0], fraction=0.04)
    # G
    ax[1, 1].plot(b.g["k"], b.g["ceiling"], "o-", label="ceiling (reproduced)")
    ax[1, 1].plot(b.g["k"], b.g["pm"], "s-", label="PMs (reproduced)")
    for name, vals in rep["fig_principle_ablation"]["rows"].items():
        ax[1, 1].plot(range(len(vals)), vals, ls="--", lw=1, label=f"{name} (reported)")
    ax[1, 1].set_xlabel("principles ablated")
    ax[1, 1].set_title("G: accuracy with fewer principles")
    ax[1, 1].legend(fontsize=7)
    # weights
    ws = b.weights["weights"]
    ax[1, 2].barh(list(ws), list(ws.values()), color=["C3" if v < 0 else "C0" for v in ws.values()])
    ax[1, 2].set_title(f"principle weights ({b.weights['mode']})")
    ax[1, 2].tick_params(labelsize=7)
    judge_footer(fig, [f"{judge} (figure C)"] if judge else [], heuristic=heuristic)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig


def figures(args: argparse.Namespace) -> None:
    spec = json.loads(args.spec_json)
    root, out = Path(spec["root"]), args.out_dir
    rep = load_reported(args.reported)
    bases = [Base(root, b) for b in spec["bases"]]
    card = read_json(args.card) if args.card else None
    headline = spec["headline"]
    feedback_dir = root / "feedback"
    bank = [*bases[0].weights["principles"], "cai", "hhh"]
    data_manifest = root / "data" / "manifest.json"
    prov = provenance(
        tier=spec["tier"],
        config=spec,
        seed=spec["seed"],
        data_sha256=sha256_file(root / "data" / "pairs.jsonl"),
        manifest_sha256=content_sha256(data_manifest),
        feedback_model=read_json(feedback_dir / f"{bank[0]}.json")["feedback_model"],
        judge=(bases[0].c or {}).get("judge_id"),
        judge_prompt_hash=(bases[0].c or {}).get("judge_prompt_hash"),
        analysis_sha256={b.name: content_sha256(b.dir / "analysis" / "weights.json") for b in bases},
    )
    a_md, a_rows = figure_a_md(bases, rep)
    b_md, b_rows = figure_b_md(bases, rep, spec["seed"])
    c_md, c_rows = figure_c_md(bases, rep, headline)
    f_md, f_rows = figure_f_md(bases[0])
    g_md, g_rows = figure_g_md(bases, rep)
    d = rep["fig_human_winrate"]
    tier_note = (f"Tier **{spec['tier']}**, seed {spec['seed']}, data sha256 `{prov['data_sha256'][:12]}`, "
                 f"feedback model `{prov['feedback_model'].get('id', prov['feedback_model'])}`, "
                 f"{card_line(card, spec['judge'])}.")  # fmt: skip
    md = "\n".join(
        [
            f"# MORLAIF (arXiv 2406.07295) — reproduced at tier `{spec['tier']}` beside reported\n",
            tier_note + "\n",
            f"Reported values: {rep['fig_principle_accuracy']['source_note'].strip()}\n",
            "## Figure A — PM accuracy per principle (vs the feedback model's labels, held-out pairs)\n",
            a_md,
            "## Figure B — combined accuracy vs human labels (scalarizers, single-PM baselines, ceiling)\n",
            "Offline the labels are the labelled stand-in pairs' known orientation, not HH-RLHF crowdworkers "
            "(methods/morlaif/README.md).\n",
            b_md,
            "## Figure C — MORLAIF vs single-objective RLAIF (pairwise judge, both orders, ties ½)\n",
            c_md,
            "## Figure D — human crowdworkers (reported only: people cannot be rerun)\n",
            md_table(["comparison", *d["columns"]], [[k, *v] for k, v in d["rows"].items()]),
            f"## Figure F — agreement between principles' feedback labels ({bases[0].name})\n",
            f_md,
            "## Figure G — accuracy vs human labels with fewer principles\n",
            g_md,
            "## Principle weights (logistic regression)\n",
            weights_md(bases),
            "## Feedback model diagnostics (both orders scored; a position-biased model agrees with itself rarely)\n",
            feedback_md(feedback_dir, bank),
            "## PPO runs (identical budget for every arm)\n",
            ppo_md(bases, [headline, "single_pm"]),
        ]
    )
    csv_rows = [
        {
            **r,
            "tier": spec["tier"],
            "seed": spec["seed"],
            "data_sha256": prov["data_sha256"][:16],
            "judge": prov["judge"] if r["figure"] == "C" else prov["feedback_model"].get("id"),
        }  # fmt: skip
        for r in a_rows + b_rows + c_rows + f_rows + g_rows
    ]
    keys = sorted({k for r in csv_rows for k in r})
    csv_rows = [{k: r.get(k) for k in keys} for r in csv_rows]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "figures.md", md)
    atomic_write_text(out / "figures.csv", to_csv(csv_rows))
    atomic_write_json(out / "provenance.json", prov)
    heuristic = bool(card and card.get("heuristic"))
    plot_figures(bases, rep, headline, out / "figures.png", judge=card_line(card, spec["judge"]), heuristic=heuristic)
    summary = [f"# MORLAIF at tier `{spec['tier']}`: the paper's claims on the reproduced numbers\n", tier_note + "\n"]
    summary += claims(bases, headline, spec["seed"])
    summary.append(f"\nFull tables: {out / 'figures.md'}; plot: {out / 'figures.png'}.\n")
    atomic_write_text(out / "summary.md", "\n".join(summary))
    log_to_wandb(json.loads(args.wandb_json), out, spec["tier"], {"figures": csv_rows}, prov, paper="morlaif")


def figure_e(args: argparse.Namespace) -> None:
    spec = json.loads(args.spec_json)
    m = read_json(args.matrix)
    rep = load_reported(args.reported)["fig_objective_winrate"]
    card = read_json(args.card) if args.card else None
    arms = m["arms"]
    body = []
    for row in arms:
        cells = []
        for col in arms:
            c = m["cells"][row].get(col)
            cells.append("–" if c is None else pct_ci(c["win_rate"], c["ci95"]))
        body.append([row, *cells])
    rep_arms = [MATRIX_NAMES.get(a, a) for a in arms]
    rep_body = []
    for row, rrow in zip(arms, rep_arms, strict=True):
        vals = rep["rows"].get(rrow)
        cells = []
        for rcol in rep_arms:
            if vals is None or rcol not in rep["columns"]:
                cells.append("–")
                continue
            v = vals[rep["columns"].index(rcol)]
            if rcol == "single_pm" and rrow != "single_pm":  # the plotting error: true value = 1 - row entry
                v = 1 - rep["rows"]["single_pm"][rep["columns"].index(rrow)]
            cells.append(f"{100 * v:.0f}")
        rep_body.append([row, *cells])
    md = "\n".join(
        [
            f"# MORLAIF figure E — win rate (%) of COLUMN against ROW, tier `{spec['tier']}`, policy {spec['base']}\n",
            f"{card_line(card, spec['judge'])}; judged both orders, ties ½, cells with 95% CIs.\n",
            md_table(["row \\ column", *arms], body),
            "\n## Reported (GPT-4-Turbo judge)\n",
            "The paper's Single-PM column duplicated its last row (a plotting error); shown here as 1 − the row entry."
            f" {rep['caption']}\n",
            md_table(["row \\ column", *arms], rep_body),
        ]
    )
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "figure_e.md", md)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    # a cell not judged (absent or None) stays blank with "n/a": never a 0 % colour
    wins = [[None if row == col else plot_value((m["cells"][row].get(col) or {}).get("win_rate")) for col in arms]
            for row in arms]  # fmt: skip
    mat = np.array([[np.nan if v is None else v for v in r] for r in wins], dtype=float)
    fig, ax = plt.subplots(figsize=(7.5, 6))
    im = ax.imshow(mat, vmin=0, vmax=100, cmap="RdBu")
    for i in range(len(arms)):
        for j in range(len(arms)):
            if i != j:
                text = MISSING_LABEL if np.isnan(mat[i, j]) else f"{mat[i, j]:.0f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(arms)), arms, rotation=60, fontsize=8)
    ax.set_yticks(range(len(arms)), arms, fontsize=8)
    ax.set_title("E: win rate of column vs row (%)")
    fig.colorbar(im, ax=ax)
    judge_footer(fig, [card_line(card, spec["judge"])], heuristic=bool(card and card.get("heuristic")))
    fig.tight_layout()
    fig.savefig(out / "figure_e.png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m alignrepro.methods.morlaif.aggregate", description=__doc__.split("\n")[0]
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("figures", help="figures A, B, C, (D), F, G + weights, feedback and PPO diagnostics")
    f.add_argument("--spec-json", required=True, help="tier, seed, bases, root, headline, judge")
    f.add_argument("--reported", type=Path, required=True, help="methods/morlaif/reported.yaml")
    f.add_argument("--card", type=Path, help="the judge's card (results/judges/<name>.json)")
    f.add_argument("--wandb-json", default='{"mode": "disabled", "project": "alignrepro"}')
    f.add_argument("--out-dir", type=Path, required=True)
    e = sub.add_parser("figure-e", help="the scalarizer win-rate matrix")
    e.add_argument("--spec-json", required=True, help="tier, seed, base, judge")
    e.add_argument("--matrix", type=Path, required=True, help="eval/figure_e.json (compare matrix)")
    e.add_argument("--reported", type=Path, required=True)
    e.add_argument("--card", type=Path)
    e.add_argument("--out-dir", type=Path, required=True)
    args = p.parse_args(argv)
    figures(args) if args.cmd == "figures" else figure_e(args)


if __name__ == "__main__":
    main()
