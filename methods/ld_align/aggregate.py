"""LD-Align's tables: every arm per iteration beside the start policy, with paired differences (same items, percentile
bootstrap 95% CIs) against SPIN; the guide model's diagnostics; the reported (context) rows; a plot; a summary.

`python -m alignrepro.methods.ld_align.aggregate --help`
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from alignrepro.io import atomic_write_text, read_json
from alignrepro.provenance import provenance
from alignrepro.reporting import line_or_missing, log_to_wandb, md_table, to_csv
from alignrepro.stats import bootstrap_mean_ci, paired_compare, seed_columns

# metric -> (label, per-item key, higher is better)
METRICS = {
    "heldout_nll": ("held-out NLL of real answers", "heldout_nll", False),
    "implicit_reward_acc": ("implicit-reward accuracy", "implicit_reward", True),
    "oracle_acc": ("oracle accuracy (verifiable)", "oracle", True),
}


def fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def fmt_ci(ci: list[float] | None, digits: int = 3) -> str:
    return "" if ci is None else f" [{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def over_seeds_cell(r: dict[str, Any], m: str) -> str:
    """'; mean over k seeds x [lo, hi]' when the row has several seeds' results, else ''."""
    if r.get("n_seeds", 1) < 2:
        return ""
    return f"; {r['n_seeds']} seeds: {fmt(r[f'{m}_seeds_mean'])}{fmt_ci(r[f'{m}_seeds_ci'])}"


def diff_ci(c: dict[str, Any]) -> str:
    lo, hi = c["ci"] or (None, None)
    return f"{fmt_diff(c['diff'])} [{fmt_diff(lo)}, {fmt_diff(hi)}]"


def fmt_p(c: dict[str, Any]) -> str:
    """The paired test's p-value and the minimum detectable effect at this n (alignrepro.stats.paired_compare)."""
    mde = "n/a" if c.get("mde") is None else f"{c['mde']:.3g}"
    return f"{c['test']} p={c['p_value']:.2g}; MDE {mde}" + (f" ({c['mde_why']})" if c.get("mde_why") else "")


def fmt_diff(x: float | None) -> str:
    """A difference: small ones in scientific notation, so a CI that excludes 0 never prints as [0.000, 0.000]."""
    return "n/a" if x is None else (f"{x:+.1e}" if 0 < abs(x) < 1e-3 else f"{x:+.3f}")


def load_evals(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """key -> evaluation JSON: "start", then "<arm>/iter<t>"."""
    root = Path(spec["root"])
    out = {"start": read_json(root / "eval/start.json")}
    for arm in spec["order"]:  # the config's order (the JSON spec's keys are sorted)
        for t in range(spec["iterations"]):
            out[f"{arm}/iter{t}"] = read_json(root / f"eval/{arm}/iter{t}.json")
    return out


def metric_rows(spec: dict[str, Any], evals: dict[str, dict]) -> list[dict[str, Any]]:
    start_label = "SFT start policy" if spec["sft"] else f"{spec['base']} (start policy)"
    rows = []
    for key, ev in evals.items():
        arm, _, t = key.partition("/iter")
        row = {"model": key, "method": start_label if key == "start" else spec["rows"][arm]["label"],
               "iteration": "-" if key == "start" else t}  # fmt: skip
        for name, (_, item_key, _) in METRICS.items():
            items = ev["per_item"][item_key]
            row[name] = ev["metrics"][name]
            row[f"{name}_ci"] = bootstrap_mean_ci(list(items.values()), spec["bootstrap"], spec["seed"])
        row["n_heldout"], row["n_verifiable"] = ev["n"]["heldout"], ev["n"]["verifiable"]
        seeds = (spec.get("seed_evals") or {}).get(key)  # [evaluation JSON per seed]: mean and t-CI over seeds
        if seeds and len(seeds) > 1:
            row |= seed_columns(seeds, {name: f"metrics.{name}" for name in METRICS})
        row["model_hash"] = ev["model"].get("adapter_sha256") or ev["model"].get("weights_sha256")
        rows.append(row)
    return rows


def comparisons(spec: dict[str, Any], evals: dict[str, dict]) -> list[dict[str, Any]]:
    """Each arm minus SPIN at the same iteration, and each arm's last iteration minus the start policy."""
    out = []
    arms = spec["order"]
    pairs = [(f"{a}/iter{t}", f"spin/iter{t}") for t in range(spec["iterations"]) for a in arms
             if a != "spin" and "spin" in arms]  # fmt: skip
    pairs += [(f"{a}/iter{spec['iterations'] - 1}", "start") for a in arms]
    for a, b in pairs:
        for name, (label, item_key, higher) in METRICS.items():
            d = paired_compare(  # + McNemar (accuracies) or sign test (NLL) p, and the MDE at this n
                evals[a]["per_item"][item_key], evals[b]["per_item"][item_key], spec["bootstrap"], spec["seed"]
            )
            better = None if not d["excludes_zero"] else (d["diff"] > 0) == higher
            out.append({"a": a, "b": b, "metric": name, "label": label, **d, "a_better": better})
    return out


def diagnostics_md(spec: dict[str, Any], diags: dict[str, dict]) -> str:
    """Per distance-weighted arm and iteration: the distances, the weights and how well d tells wrong answers."""
    header = ["arm", "iteration", "pairs", "d mean (std)", "w min..max", "corr(d, abs. length diff.)",
              "AUC d: wrong vs right (verifiable)", "wrong / n"]  # fmt: skip
    rows = []
    for key, dg in diags.items():
        arm, _, t = key.partition("/iter")
        v = dg["verifiable"]
        rows.append([spec["rows"][arm]["label"], t, dg["n_pairs"],
                     f"{dg['distance']['mean']:.3f} ({dg['distance']['std']:.3f})",
                     f"{dg['weight']['min']:.2f}..{dg['weight']['max']:.2f}", fmt(dg["corr_distance_abs_len_diff"], 2),
                     fmt(v["auc_distance_wrong"], 2), f"{v['n_wrong']} / {v['n']}"])  # fmt: skip
    return md_table(header, rows)


def guide_md(spec: dict[str, Any], guide: dict[str, Any], diags: dict[str, dict]) -> str:
    lines = [
        f"# LD-Align guide model and weights ({spec['tier']})\n",
        f"Encoder: `{json.dumps(guide['encoder'])}`; latent dim {guide['settings']['latent_dim']}, "
        f"{guide['settings']['prefix_tokens']} soft-prefix vectors; reconstruction loss per answer token "
        f"{fmt(_first(guide['training']['loss_per_epoch']))} (epoch 1) -> {fmt(guide['training']['final_loss'])} "
        f"(last epoch) over {guide['training']['steps']} steps on {guide['data']['n']} texts.",
        f"Weights: {spec['weights']['form']}, clipped to {spec['weights']['clip']} and scaled to mean 1.\n",
    ]
    lines.append(diagnostics_md(spec, diags))
    lines.append(
        "AUC: how often a wrong answer's distance exceeds a right one's (0.5 = no signal; the weights should rise "
        "for wrong answers). A correlation with the length difference near 1 would mean the distance mostly "
        "measures length (real answers are cut to the generation budget before embedding to limit that)."
    )
    return "\n".join(lines) + "\n"


def _first(values: list[float] | None) -> float | None:
    return values[0] if values else None


def plot(rows: list[dict[str, Any]], spec: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.2))
    start = next(r for r in rows if r["model"] == "start")
    for ax, (name, (label, _, higher)) in zip(axes, METRICS.items(), strict=True):
        for arm in spec["order"]:
            info = spec["rows"][arm]
            series = [start] + [next(r for r in rows if r["model"] == f"{arm}/iter{t}")
                                for t in range(spec["iterations"])]  # fmt: skip
            xs = list(range(len(series)))
            line_or_missing(ax, xs, [r[name] for r in series], "o-", ci=[r[f"{name}_ci"] for r in series],
                            label=info["label"])  # fmt: skip
        ax.set_title(f"{label} ({'higher' if higher else 'lower'} is better)", fontsize=8)
        ax.set_xlabel("iteration (0 = start policy)")
        ax.set_xticks(range(spec["iterations"] + 1))
    axes[0].legend(fontsize=7)
    fig.suptitle(f"LD-Align vs SPIN, tier {spec['tier']} (95% bootstrap CIs; judge-free metrics)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def reported_md(reported: dict[str, Any]) -> str:
    lines = ["# LD-Align: reported numbers\n", reported["ld_align"]["note"] + "\n"]
    for table in reported["context"]:
        lines.append(f"## {table['paper']}\n\n{table['caption']}\n")
        lines.append(md_table(["method", *table["columns"]], [[r["method"], *(r[c] for c in table["columns"])]
                                                             for r in table["rows"]]))  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m alignrepro.methods.ld_align.aggregate", description=__doc__)
    p.add_argument("--spec-json", required=True, help="the table's spec (rules.smk ld_table_spec)")
    p.add_argument("--reported", type=Path, required=True, help="methods/ld_align/reported.yaml")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--wandb-json", default='{"mode": "disabled", "project": "alignrepro"}', help="W&B settings")
    args = p.parse_args(argv)
    spec = json.loads(args.spec_json)
    root, out, name = Path(spec["root"]), args.out_dir, spec["table"]
    out.mkdir(parents=True, exist_ok=True)
    evals = load_evals(spec)
    rows = metric_rows(spec, evals)
    comps = comparisons(spec, evals)
    reported = yaml.safe_load(args.reported.read_text())
    prov = provenance(tier=spec["tier"], config=spec, seed=spec["seed"])
    header = ["method", "iteration", *(f"{METRICS[m][0]} {'↑' if METRICS[m][2] else '↓'}" for m in METRICS),
              "n (held-out / verifiable)", "model hash"]  # fmt: skip
    table = [[r["method"], r["iteration"], *(fmt(r[m]) + fmt_ci(r[f"{m}_ci"]) + over_seeds_cell(r, m) for m in METRICS),
              f"{r['n_heldout']} / {r['n_verifiable']}", (r["model_hash"] or "")[:12]] for r in rows]  # fmt: skip
    comp_rows = [[c["a"], c["b"], c["label"], diff_ci(c),
                  c["n"], c["n_differ"], fmt_p(c),
                  {True: "a better", False: "b better", None: "no difference shown"}[c["a_better"]]]
                 for c in comps]  # fmt: skip
    md = [
        f"# LD-Align {'vs SPIN per iteration' if name == 'main' else 'ablations'} (tier {spec['tier']}, "
        f"seed {spec['seed']}, start: {'SFT of ' if spec['sft'] else ''}{spec['base']})\n",
        "Judge-free metrics with 95% percentile-bootstrap CIs over items. **No LD-Align numbers were reported** "
        "(the paper's tables could not be retrieved; see reported.md): these rows stand alone.\n",
        md_table(header, table),
        "\n## Paired differences (a - b on the same items, 95% bootstrap CI; exact McNemar for accuracies, sign test "
        "for NLL; MDE = minimum detectable effect at alpha .05, power .8)\n",
        md_table(["a", "b", "metric", "a - b [CI]", "items", "items that differ", "test p; MDE", "verdict"], comp_rows),
        f"\nProvenance: commit {prov.get('git_commit')}, tier {spec['tier']}, seed {spec['seed']}; model hashes above.",
    ]
    atomic_write_text(out / f"{name}.md", "\n".join(md) + "\n")
    atomic_write_text(out / f"{name}.csv", to_csv([{k: v for k, v in r.items()} for r in rows]))
    tables = {f"ld_align_{name}": rows, f"ld_align_{name}_differences": comps}
    diags = {f"{a}/iter{t}": read_json(root / f"weighted/{a}/iter{t}.diagnostics.json")
             for a in spec["order"] if spec["rows"][a]["weighting"] != "constant"
             for t in range(spec["iterations"])}  # fmt: skip
    if name != "main":  # each arm's distance against the verifiable answers: trained guide vs raw encoder vs policy
        md = "\n".join(md) + "\n\n## Distances and weights per arm (AUC: wrong vs right verifiable answers)\n\n"
        atomic_write_text(out / f"{name}.md", md + diagnostics_md(spec, diags))
    if name == "main":
        atomic_write_text(out / "guide.md", guide_md(spec, read_json(root / "guide/guide.json"), diags))
        atomic_write_text(out / "reported.md", reported_md(reported))
        plot(rows, spec, out / "main.png")
    log_to_wandb(json.loads(args.wandb_json), root, spec["tier"], tables, prov, paper="ld_align")
    summary = [f"LD-Align {name} at tier {spec['tier']}:"]
    for c in comps:
        if c["b"].startswith("spin/") or name != "main":
            summary.append(f"  {c['a']} - {c['b']}: {c['label']} {diff_ci(c)} "
                           f"({'shown' if c['excludes_zero'] else 'not shown'} at 95%)")  # fmt: skip
    summary.append(f"  tables: {out}/{name}.md" + (f", {out}/guide.md; plot: {out}/main.png" if name == "main" else ""))
    atomic_write_text(out / ("summary.md" if name == "main" else f"{name}_summary.md"), "\n".join(summary) + "\n")


if __name__ == "__main__":
    main()
