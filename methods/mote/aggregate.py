"""MoTE's tables and figures: reproduced rows beside the reported ones (methods/mote/reported.yaml, arXiv v5).

- `tables` (target mote_tables): Table 1 (MoTE + the baselines present at the tier; o1 / o3-mini / MATRIX reported
  only, with the reason), Table 2 (Self-BLEU of the chains), Table 3 (prompting only) -> tables.md, tables.csv,
  summary.md.
- `ablations` (target mote_ablations): Table 4 (architectures), Table 6 (measured training cost of the mask trick
  vs the explicit datasets, scores of both), Fig. 6 (Harm vs mean output tokens per inference mode and budget), an
  architecture-ablation plot -> ablations.md, ablations.csv, fig6_harm_vs_budget.png, table4_architectures.png,
  ablations_summary.md.
Every reproduced number carries tier, base model, judge id, seed and the hash of the prompts it was scored on; the
judge card line of the judge used heads each file; the tables are logged as an offline W&B run (paper "mote").

CLI: `python -m alignrepro.methods.mote.aggregate {tables,ablations} --spec-json JSON --reported YAML --card JSON
      --out-dir results/mote/<tier>/tables [--wandb-json JSON]`
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import yaml

from alignrepro.evals.judges.lines import card_line
from alignrepro.io import atomic_write_json, read_json
from alignrepro.methods.mote.paired import build_differences, differences_md
from alignrepro.provenance import provenance
from alignrepro.reporting import bars_or_missing, judge_footer, log_to_wandb, md_table, plot_value, to_csv

log = logging.getLogger("mote.aggregate")
COLS = {  # our column -> the reported YAML's column
    "help": "hh_help",
    "harm": "hh_harm_harmless_rate_pct",
    "harm_help": "hh_harm_help",
    "goodness_at_0.1": "strongreject_goodness_at_0.1",
    "not_overrefuse": "xstest_not_overrefuse",
}
HEAD = {
    "help": "Help (1-10)",
    "harm": "Harm: harmless % ↑",
    "harm_help": "Harm-Help (1-10)",
    "goodness_at_0.1": "goodness@0.1 stand-in",
    "not_overrefuse": "not_overrefuse stand-in",
    "harm_strmatch": "refused % (string match) ↑",
}
# Judge-free: harmful test prompts answered with a refusal (XSTest's prefixes). No reported counterpart; shown because
# a small judge's harmlessness ratings can sit below the threshold for every answer (SmolLM2 at tiny).
EXTRA = ["harm_strmatch"]
# Table 1's baselines are rows (methods/mote/paper.yaml, row folders): label and note come in the spec's "baselines"
BASELINE_NOTE = {  # a row without a note of its own
    "trl:SFTTrainer": "LoRA SFT on its self-made data",
    "trl:DPOTrainer": "LoRA DPO on its self-made pairs",
}
PROMPTING_ROWS = {
    "prompt-plain": "WVU",
    "prompt-zeroshot-cot": "zero-shot-CoT",
    "prompt-critique-revise": "Critique-Revise",
    "prompt-analysis-answer": "analysis-answer",
    "prompt-guidance-answer": "guidance-answer",
    "prompt-aligncot": "analysis-guidance-answer",
}
ROW_NOTES = {
    "WVU": "plain prompting of the base model",
}
REPORTED_ONLY = {
    "o1": "reported only: closed OpenAI model, not reproducible here",
    "o3-mini": "reported only: closed OpenAI model, not reproducible here",
    "MATRIX": "reported only: MATRIX's multi-agent social-scene simulation is not reimplemented (methods/mote/README)",
}
# Each column's own 95 % CI: the safety layer's interval of the metric behind it (set, metric, scale to the column)
CI_SOURCE = {
    "help": ("benign", "help_judge", 1),
    "harm": ("harmful", "harmless_rate_judge", 1),
    "harm_help": ("harmful", "harm_help_judge", 1),
    "not_overrefuse": ("benign", "not_overrefuse_xstest", 0.01),
    "goodness_at_0.1": ("jailbreak", "goodness_at_0.1_judge", 1),
    "harm_strmatch": ("harmful", "harmless_rate_strmatch_xstest", 1),
}
SELF_BLEU_ROWS = {"total_chain": "total_reasoning_chain", "analysis": "analysis", "guidance": "guidance",
                  "answer": "safe_answer"}  # fmt: skip


def reported_tables(path: Path) -> dict[str, dict[str, Any]]:
    return {t["id"]: t for t in yaml.safe_load(Path(path).read_text())["tables"]}


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


class Judged:
    """One evaluate.py result (a table's systems on one base)."""

    def __init__(self, path: Path, spec: dict[str, Any], base: str) -> None:
        self.d, self.base, self.spec = read_json(path), base, spec

    def row(self, table: str, name: str, system: str, note: str = "") -> dict[str, Any]:
        s = self.d["systems"][system]
        out = {"table": table, "row": name, "source": "reproduced"}
        out |= {c: s.get(c) for c in [*COLS, *EXTRA]}
        out |= {f"{c}_ci95": self.ci(system, c) for c in [*COLS, *EXTRA]}
        out |= {
            "mean_output_tokens": s.get("mean_output_tokens"),
            "n": json.dumps(s["n"], sort_keys=True),
            "tier": self.spec["tier"],
            "model": f"{self.base}:{system}",
            "judge": self.d["judge"]["id"],
            "seed": self.spec["seed"],
            "data_sha256": self.d["prompts"]["sha256"][:12],
            "answers_sha256": self.d["inputs"][system]["sha256"][:12],
            "note": note,
        }
        return out

    def ci(self, system: str, col: str) -> list[float] | None:
        """The column's 95 % CI (Wilson for rates, normal for mean ratings) from the safety layer's metric."""
        sets = self.d["systems"][system].get("sets", {})
        name, metric, scale = CI_SOURCE[col]
        ci = ((sets.get(name) or {}).get("metrics", {}).get(metric) or {}).get("ci95")
        return None if not ci else [ci[0] * scale, ci[1] * scale]


def reported_row(table: str, name: str, values: dict[str, Any], note: str = "") -> dict[str, Any]:
    out = {"table": table, "row": name, "source": "reported (v5)"}
    out |= {c: values.get(yc) for c, yc in COLS.items()}
    return out | {"note": note}


def _with_ci(r: dict[str, Any], c: str, digits: int) -> str:
    """A reproduced value with its 95 % CI (Judged.ci); a reported value as reported."""
    ci = r.get(f"{c}_ci95")
    if r.get(c) is not None and f"{c}_ci95" in r and not ci:  # a reproduced mean of fewer than 2 values
        return f"{_fmt(r[c], digits)} (no CI: fewer than 2 items)"
    if r.get(c) is None or not ci:
        return _fmt(r.get(c), digits)
    return f"{_fmt(r[c], digits)} [{_fmt(float(ci[0]), digits)}, {_fmt(float(ci[1]), digits)}]"


def md(rows: list[dict[str, Any]], cols: list[str], digits: dict[str, int] | None = None) -> str:
    digits = digits or {}
    header = ["row", "source", *[HEAD.get(c, c) for c in cols], "model", "judge", "n", "note"]
    body = [
        [r["row"], r["source"], *[_with_ci(r, c, digits.get(c, 2)) for c in cols], r.get("model", "–"),
         r.get("judge", "–"), r.get("n", "–"), r.get("note", "")]
        for r in rows
    ]  # fmt: skip
    return md_table(header, body)


def provenance_line(spec: dict[str, Any], judged: list[Judged]) -> str:
    data = sorted({j.d["prompts"]["sha256"][:12] for j in judged})
    return (f"tier `{spec['tier']}`, seed {spec['seed']}, bases {', '.join(spec['bases'])}, chains "
            f"`{spec['template']}`, scored prompts sha256 {', '.join(data)}")  # fmt: skip


def chain_shapes(answers: Path) -> str:
    """What the model wrote at adaptive inference (from infer.py's summary): the steps it emitted, per answer."""
    summary = answers.with_name(answers.name + ".summary.json")
    if not summary.is_file():
        return ""
    d = read_json(summary)
    shapes = ", ".join(f"{k} {v}" for k, v in sorted(d["chain_shapes"].items(), key=lambda kv: -kv[1]))
    none = d["fallback_counts"].get("no_step_tokens", 0)
    return f"; chains of its {d['n_rows']} answers: {shapes} ({none} without any step token)"


def build_tables(spec: dict[str, Any], reported: dict[str, Any]) -> tuple[dict[str, list[dict]], list[Judged]]:
    root = Path(spec["root"])
    rep1, rep3 = reported["table1"]["rows"], reported["table3"]["rows"]
    t1 = [reported_row("table1", n, v, REPORTED_ONLY.get(n, "")) for n, v in rep1.items()]
    judged = []
    for base in spec["bases"]:
        j = Judged(root / base / "eval" / "table1.json", spec, base)
        judged.append(j)
        note = f"adaptive inference, chains {spec['template']}{chain_shapes(root / base / 'answers' / 'mote' / 'mote')}"
        t1.append(j.row("table1", f"MoTE-{base}", "MoTE", note))
        if base == spec["main"]:
            for b in spec["baselines"]:  # {name, label, trainer, note}, in the order the rules list the rows
                note = b.get("note") or BASELINE_NOTE[b["trainer"]]
                meta = root / base / "models" / f"baseline_{b['name']}" / "model.json"
                if meta.is_file() and read_json(meta).get("untrained_no_data"):
                    note = "UNTRAINED: its data step kept no rows (= the base model); " + note
                t1.append(j.row("table1", b["label"], f"baseline_{b['name']}", note))
    t2 = []
    for name, v in reported["table2"]["rows"].items():
        t2.append({"table": "table2", "row": name, "source": "reported (v5)", **v,
                   "note": REPORTED_ONLY.get(name, "")})  # fmt: skip
    for base in spec["bases"]:
        sb = read_json(root / base / "chains" / f"{spec['template']}.self_bleu.json")
        for comp, v in sb["rows"].items():
            t2.append({"table": "table2", "row": SELF_BLEU_ROWS.get(comp, comp), "source": "reproduced",
                       "amount": v["amount"], "self_bleu": v["self_bleu"], "self_bleu_ci95": v.get("ci95"),
                       "tier": spec["tier"],
                       "model": base, "seed": spec["seed"],
                       "data_sha256": sb["provenance"]["chains"]["sha256"][:12], "note": ""})  # fmt: skip
    t3 = [reported_row("table3", n, v, REPORTED_ONLY.get(n, "")) for n, v in rep3.items()]
    j3 = Judged(root / spec["main"] / "eval" / "table3.json", spec, spec["main"])
    judged.append(j3)
    for t in spec["prompting"]:
        name = PROMPTING_ROWS[t]
        t3.append(j3.row("table3", name, t, ROW_NOTES.get(name, f"template {t}")))
    return {"table1": t1, "table2": t2, "table3": t3}, judged


def _t2_md(rows: list[dict[str, Any]]) -> str:
    body = [[r["row"], r["source"], r.get("amount"), _with_ci(r, "self_bleu", 2), r.get("model", "–"),
             r.get("note", "")] for r in rows]  # fmt: skip
    return md_table(["data", "source", "amount", "Self-BLEU ↓ [95% CI over hypotheses]", "model", "note"], body)


def _headline(rows: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["row"] == name and r["source"] == "reproduced"), None)


def cmd_tables(args: argparse.Namespace, spec: dict[str, Any]) -> None:
    reported = reported_tables(args.reported)
    tables, judged = build_tables(spec, reported)
    diffs = build_differences(spec, judged, PROMPTING_ROWS)
    card = read_json(args.card) if args.card else None
    judge_line = card_line(card, spec["judge"])
    cols1 = [*COLS, *EXTRA]
    parts = [
        "# MoTE (arXiv 2405.00557): reproduced beside reported\n",
        f"{judge_line}. {provenance_line(spec, judged)}.\n",
        "Reported rows are the paper's v5 numbers (GPT-4-1106-preview judge, WVU-7B); reproduced rows come from this "
        "tier's models and judge and are not comparable in absolute value. Harm = harmless rate (higher = safer). "
        "goodness@0.1 and not_overrefuse are stand-ins (shared jailbreak pool; string-match compliance on the "
        "helpful test prompts), not StrongREJECT / XSTest.\n",
        "## Table 1: self-alignment methods\n",
        md(tables["table1"], cols1),
        "\n## Table 2: Self-BLEU of the chains (lower = more diverse)\n",
        _t2_md(tables["table2"]),
        "\n## Table 3: prompting only (no training)\n",
        md(tables["table3"], ["help", "harm", "harm_help", *EXTRA]),
        "\n## Paired differences (same prompts; 95% bootstrap CI; exact McNemar for rates, sign test for ratings; "
        "MDE = minimum detectable effect at alpha .05, power .8)\n",
        differences_md(diffs, HEAD),
    ]
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tables.md").write_text("\n".join(parts))
    flat = [r for t in tables.values() for r in t]
    keys = list(dict.fromkeys(k for r in flat for k in r))
    (out / "tables.csv").write_text(to_csv([{k: r.get(k) for k in keys} for r in flat]))
    if diffs:
        keys = list(dict.fromkeys(k for r in diffs for k in r))
        (out / "differences.csv").write_text(to_csv([{k: r.get(k) for k in keys} for r in diffs]))
    mote = _headline(tables["table1"], f"MoTE-{spec['main']}")
    lines = [f"# MoTE summary (tier {spec['tier']})", "", judge_line, ""]
    for r in [x for x in tables["table1"] if x["source"] == "reproduced"]:
        vals = ", ".join(f"{HEAD[c]} {_fmt(r[c])}" for c in cols1)
        lines.append(f"- {r['row']}: {vals}")
    if mote is not None:
        rep = reported["table1"]["rows"]["MoTE-WVU-7B"]
        vals = ", ".join(f"{HEAD[c]} {_fmt(rep.get(yc))}" for c, yc in COLS.items())
        lines.append(f"- reported MoTE-WVU-7B (v5, GPT-4-1106-preview judge): {vals}")
    lines += ["", f"Tables: {out / 'tables.md'}", ""]
    (out / "summary.md").write_text("\n".join(lines))
    prov = provenance(tier=spec["tier"], config=spec, seed=spec["seed"], judge=spec["judge"])
    atomic_write_json(out / "tables.provenance.json", prov)
    if args.wandb_json:
        log_to_wandb(json.loads(args.wandb_json), out, spec["tier"], tables, prov, paper="mote")


def build_ablations(spec: dict[str, Any], reported: dict[str, Any]) -> tuple[dict[str, list[dict]], dict, Judged]:
    root = Path(spec["root"]) / spec["main"]
    j4 = Judged(root / "eval" / "table4.json", spec, spec["main"])
    t4 = [reported_row("table4", n, v) for n, v in reported["table4"]["rows"].items()]
    for a in spec["archs"]:  # the Table 4 rows of paper.yaml / row folders: name, label, note
        t4.append(j4.row("table4", a["label"], a["name"], a.get("note") or f"train.py --arch {a['name']}"))
    cost = read_json(root / "table6_cost.json")
    t6 = []
    for name, v in reported["table6"]["rows"].items():
        t6.append(reported_row("table6", name, v) | {"flops_rel": v["flops_rel"], "time_rel": v["time_rel"]})
    for name, system in (("explicit_extra_datasets", "mote_explicit"), ("MoTE", "mote")):
        c = cost["rows"][name]
        t6.append(j4.row("table6", name, system) | {
            "flops_rel": c["flops_rel"], "time_rel": c["time_rel"], "flops": c["flops"], "time_s": c["time_s"],
            "note": "; ".join(cost.get("problems", [])) or "measured FLOPs (FlopCounterMode fit) and wall time "
                    "(one measurement each: no CI; the scores carry theirs)",
        })  # fmt: skip
    fig6 = read_json(root / "eval" / "fig6.json")
    jf = Judged(root / "eval" / "fig6.json", spec, spec["main"])  # the CIs of its columns
    f6 = []
    for key, s in fig6["systems"].items():
        mode, _, budget = key.rpartition("-")
        f6.append({"table": "fig6", "row": key, "source": "reproduced", "mode": mode, "budget": int(budget),
                   "harm": s["harm"], "help": s["help"], "harm_help": s["harm_help"],
                   **{f"{c}_ci95": jf.ci(key, c) for c in ("harm", "help", "harm_help")},
                   "mean_output_tokens": s["mean_output_tokens"], "tier": spec["tier"], "model": spec["main"],
                   "judge": fig6["judge"]["id"], "seed": spec["seed"],
                   "data_sha256": fig6["prompts"]["sha256"][:12]})  # fmt: skip
    return {"table4": t4, "table6": t6, "fig6": f6}, fig6, j4


def _plots(tables: dict[str, list[dict]], out: Path, judge_line: str, heuristic: bool = False) -> tuple[Any, Any]:
    """Writes the two PNGs and returns their (closed) Figures, whose artists tests inspect. Each names the judge
    (`judge_line`, the tables' card line) in its footer, with the heuristic warning where the tables carry one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    modes = sorted({r["mode"] for r in tables["fig6"]})
    for m in modes:
        pts = [
            (r["mean_output_tokens"] or r["budget"], plot_value(r["harm"])) for r in tables["fig6"] if r["mode"] == m
        ]
        pts = sorted((x, y) for x, y in pts if y is not None)  # a missing Harm is left out, a real 0 % stays
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=m)
    ax.set_xlabel(
        "mean output tokens (budgets " + ", ".join(str(b) for b in sorted({r["budget"] for r in tables["fig6"]})) + ")"
    )
    ax.set_ylabel("Harm: harmless rate %")
    ax.set_title("Fig. 6 (reproduced): Harm vs output-token budget", fontsize=9)
    ax.legend(fontsize=7)
    judge_footer(fig, [judge_line], heuristic=heuristic)
    fig.tight_layout()
    fig.savefig(out / "fig6_harm_vs_budget.png", dpi=120)
    plt.close(fig)
    fig6 = fig

    rows = tables["table4"]
    names = list(dict.fromkeys(r["row"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, col in zip(axes, ("harm", "help"), strict=True):
        for k, src in enumerate(("reported (v5)", "reproduced")):
            # an arch the paper reports but this tier does not run: "n/a", not a bar of height 0
            vals = [next((r[col] for r in rows if r["row"] == n and r["source"] == src), None) for n in names]
            bars_or_missing(ax, [i + 0.4 * k for i in range(len(names))], vals, 0.4, label=src)
        ax.set_xticks([i + 0.2 for i in range(len(names))], names, rotation=60, ha="right", fontsize=7)
        ax.set_title(HEAD[col], fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("Table 4: architecture ablation (reported WVU-7B / GPT-4 vs reproduced at this tier)", fontsize=9)
    judge_footer(fig, [f"{judge_line} (reproduced rows)"], heuristic=heuristic)
    fig.tight_layout()
    fig.savefig(out / "table4_architectures.png", dpi=120)
    plt.close(fig)
    return fig6, fig


def cmd_ablations(args: argparse.Namespace, spec: dict[str, Any]) -> None:
    reported = reported_tables(args.reported)
    tables, fig6, j4 = build_ablations(spec, reported)
    card = read_json(args.card) if args.card else None
    judge_line = card_line(card, spec["judge"])
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cols = ["help", "harm", "harm_help"]
    t6cols = ["flops_rel", "time_rel", *cols]
    f6_body = [[r["mode"], r["budget"], _fmt(r["mean_output_tokens"], 1), _with_ci(r, "harm", 2),
                _with_ci(r, "help", 2), _with_ci(r, "harm_help", 2)] for r in tables["fig6"]]  # fmt: skip
    parts = [
        "# MoTE ablations: reproduced beside reported\n",
        f"{judge_line}. {provenance_line(spec, [j4])}.\n",
        "## Table 4: architecture ablation\n",
        md(tables["table4"], cols),
        "\n## Table 6: training cost of the step-skip mask vs the explicit datasets (scores on their own scale)\n",
        md(tables["table6"], t6cols),
        "\n## Fig. 6: Harm vs output-token budget (data of fig6_harm_vs_budget.png)\n",
        md_table(["mode", "budget", "mean output tokens", "Harm %", "Help", "Harm-Help"], f6_body),
    ]
    (out / "ablations.md").write_text("\n".join(parts))
    flat = [r for t in tables.values() for r in t]
    keys = list(dict.fromkeys(k for r in flat for k in r))
    (out / "ablations.csv").write_text(to_csv([{k: r.get(k) for k in keys} for r in flat]))
    _plots(tables, out, judge_line, heuristic=bool(card and card.get("heuristic")))
    lines = [f"# MoTE ablations summary (tier {spec['tier']})", "", judge_line, ""]
    for r in [x for x in tables["table4"] if x["source"] == "reproduced"]:
        lines.append(f"- {r['row']}: " + ", ".join(f"{HEAD[c]} {_fmt(r[c])}" for c in cols))
    for r in [x for x in tables["table6"] if x["source"] == "reproduced"]:
        lines.append(f"- Table 6 {r['row']}: FLOPs {_fmt(r['flops_rel'])}x, time {_fmt(r['time_rel'])}x")
    lines += ["", f"Tables: {out / 'ablations.md'}", ""]
    (out / "ablations_summary.md").write_text("\n".join(lines))
    prov = provenance(tier=spec["tier"], config=spec, seed=spec["seed"], judge=spec["judge"])
    atomic_write_json(out / "ablations.provenance.json", prov)
    if args.wandb_json:
        log_to_wandb(json.loads(args.wandb_json), out, spec["tier"], tables, prov, paper="mote")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m alignrepro.methods.mote.aggregate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("cmd", choices=["tables", "ablations"])
    ap.add_argument(
        "--spec-json", required=True, help="tier, seed, bases, main, root, judge, template, rows (rules.smk)"
    )
    ap.add_argument("--reported", type=Path, required=True, help="methods/mote/reported.yaml")
    ap.add_argument("--card", type=Path, default=None, help="results/judges/<judge>.json")
    ap.add_argument("--wandb-json", default=None, help="W&B settings; omit for no run")
    ap.add_argument("--out-dir", type=Path, required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    spec = json.loads(args.spec_json)
    (cmd_tables if args.cmd == "tables" else cmd_ablations)(args, spec)


if __name__ == "__main__":
    main()
