"""CUT tables: the paper's reported tables beside the reproduced rows (never in the same table), with
provenance, as CSV + Markdown, and one plot. `python -m alignrepro.methods.cut.aggregate --help`"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import yaml

from alignrepro.evals.verifiable.accuracy import wilson
from alignrepro.io import atomic_write_json, atomic_write_text, read_json, sha256_file
from alignrepro.provenance import provenance
from alignrepro.reporting import bars_or_missing, judge_footer, line_or_missing, log_to_wandb, md_table, to_csv
from alignrepro.stats import paired_compare, seed_columns


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}"


def ci(lo_hi: list[float] | None) -> str:
    return "" if not lo_hi else f"[{lo_hi[0]:.1f}, {lo_hi[1]:.1f}]"


def _eval_id(spec: dict[str, Any], model_id: str) -> str:
    return "cut" if model_id == "cut_iter1" and spec["offline"] == "online_iter1" else model_id


def model_row(spec: dict[str, Any], base: str, model_id: str, label: str) -> dict[str, Any]:
    root = Path(spec["root"])
    eval_id = _eval_id(spec, model_id)
    acc = read_json(root / "eval" / "accuracy" / base / f"{eval_id}.json")
    win = read_json(root / "eval" / "winrate" / base / f"{eval_id}.json")
    model_dir = Path(spec["model_dirs"][base][eval_id])
    meta = read_json(model_dir / "model.json")
    cut_stats = _cut_train_stats(meta)
    groups = win.get("groups", {})
    return {
        "base": base,
        "method": label,
        "model_id": model_id,
        "objective": "-" if model_id == "base" else spec["rows"][model_id.split("_iter")[0]]["objective"],
        "accuracy": acc.get("accuracy"),
        "accuracy_ci95": acc.get("ci95"),
        "accuracy_n": acc.get("n"),
        "win_rate": win.get("win_rate"),
        "win_rate_ci95": win.get("ci95"),
        "win_rate_n": win.get("n_total"),
        "win_rate_verifiable": groups.get("verifiable", {}).get("win_rate"),
        "win_rate_open": groups.get("open", {}).get("win_rate"),
        "judge_verifiable": groups.get("verifiable", {}).get("judge_id"),
        "judge_open": groups.get("open", {}).get("judge_id"),
        "judge_open_heuristic": groups.get("open", {}).get("heuristic"),
        "detected_ratio": cut_stats.get("detected_ratio"),
        "n_train_examples": meta.get("data", {}).get("n_examples"),
        "train_seconds": meta.get("train_seconds"),
        "model_hash": meta.get("adapter_sha256") or meta.get("weights_sha256"),
        "data_hash": meta.get("triplets_sha256"),
        "seed": meta.get("provenance", {}).get("seed", spec["seed"]),
        "tier": spec["tier"],
    }


def add_paired_accuracy(spec: dict[str, Any], base: str, rows: list[dict[str, Any]]) -> None:
    """Each row's oracle accuracy minus the base model's on the same items (in points): paired bootstrap CI, exact
    McNemar p and the minimum detectable effect at that n (alignrepro.stats.paired_compare). The first row is the
    base itself; an accuracy file without per-item outcomes (written before they were kept) says so."""
    acc_dir = Path(spec["root"]) / "eval" / "accuracy" / base

    def items(model_id: str) -> dict[str, float] | None:
        per = read_json(acc_dir / f"{_eval_id(spec, model_id)}.json").get("per_item")
        return None if per is None else {k: 100.0 * v for k, v in per.items()}  # points, like the accuracy column

    ref = items(rows[0]["model_id"])
    for r in rows:
        own = items(r["model_id"]) if r is not rows[0] else None
        d = paired_compare(own, ref, spec.get("bootstrap", 2000), spec["seed"], binary=True) if own and ref else {}
        r |= {"accuracy_vs_base": d.get("diff"), "accuracy_vs_base_ci95": d.get("ci"),
              "accuracy_vs_base_p": d.get("p_value"), "accuracy_vs_base_mde": d.get("mde"),
              "accuracy_vs_base_n": d.get("n"),
              "accuracy_vs_base_note": "" if d or r is rows[0] else "no per-item outcomes"}  # fmt: skip


def add_seed_columns(spec: dict[str, Any], base: str, rows: list[dict[str, Any]]) -> None:
    """With several training seeds (config `seeds`), each trained row's accuracy and win rate over its seeds: mean and
    t-interval (alignrepro.stats.seed_columns). The run's seed is the row itself, the others "<row>-seed<s>"."""
    seeds = spec.get("seeds") or [spec["seed"]]
    if len(seeds) < 2:
        return
    root = Path(spec["root"]) / "eval"
    for r in rows:
        ids = [_eval_id(spec, r["model_id"])]
        if r["model_id"] in spec["rows"]:  # the base model is not trained: one seed (same columns, for the CSV)
            ids += [f"{r['model_id']}-seed{s}" for s in seeds[1:]]
        per_seed = [
            {"seed": s, "accuracy": read_json(root / "accuracy" / base / f"{m}.json").get("accuracy"),
             "win_rate": read_json(root / "winrate" / base / f"{m}.json").get("win_rate")}
            for s, m in zip(seeds, ids, strict=False)  # the base: its one seed
        ]  # fmt: skip
        r |= seed_columns(per_seed, {"accuracy": "accuracy", "win_rate": "win_rate"})


def seeds_cell(r: dict[str, Any]) -> str:
    if r.get("n_seeds", 1) < 2:
        return "1 seed"
    return f"{pct(r['accuracy_seeds_mean'])} {ci(r['accuracy_seeds_ci'])} (n={r['n_seeds']})"


def paired_cell(r: dict[str, Any]) -> str:
    if r["accuracy_vs_base"] is None:
        return r["accuracy_vs_base_note"] or "–"
    mde = "n/a" if r["accuracy_vs_base_mde"] is None else f"{r['accuracy_vs_base_mde']:.1f}"
    return (f"{r['accuracy_vs_base']:+.1f} {ci(r['accuracy_vs_base_ci95'])} p={r['accuracy_vs_base_p']:.2g}, "
            f"MDE {mde} (n={r['accuracy_vs_base_n']})")  # fmt: skip


def _cut_train_stats(meta: dict[str, Any]) -> dict[str, float]:
    logs = [h for h in meta.get("log_history", []) if "detected_ratio" in h]
    return {"detected_ratio": sum(h["detected_ratio"] for h in logs) / len(logs)} if logs else {}


def reproduced_md(rows: list[dict[str, Any]], first_col: str) -> str:
    header = [
        first_col,
        "objective",
        "accuracy % [95% CI] (oracle)",
        "accuracy − base, paired [95% CI], McNemar p, MDE",
        "accuracy over seeds, mean [95% t-CI]",
        "win rate vs base % [95% CI]",
        "win (verifiable)",
        "win (open)",
        "\\|U\\|/N",
        "n train",
    ]
    body = [
        [
            r["method"],
            r["objective"],
            f"{pct(r['accuracy'])} {ci(r['accuracy_ci95'])}",
            paired_cell(r),
            seeds_cell(r),
            f"{pct(r['win_rate'])} {ci(r['win_rate_ci95'])}",
            pct(r["win_rate_verifiable"]),
            pct(r["win_rate_open"]),
            "" if r["detected_ratio"] is None else f"{r['detected_ratio']:.3f}",
            r["n_train_examples"] or "",
        ]
        for r in rows
    ]
    return md_table(header, body)


def judge_note(rows: list[dict[str, Any]], cards: dict[str, dict[str, Any]] | None = None) -> str:
    """Which judges made the numbers, with each judge's measured agreement from its card (results/judges/)."""
    r = rows[0]

    def with_card(judge_id: str | None) -> str:
        card = (cards or {}).get(judge_id or "")
        if card is None:
            return f"`{judge_id}` (no judge card)"
        pw = card["pairwise"]
        ci = pw.get("ci95") or [math.nan, math.nan]
        agreement = math.nan if pw.get("agreement") is None else pw["agreement"]  # None: every verdict unparsable
        return (f"`{judge_id}` (judge card `{card['name']}`: pairwise agreement {agreement:.1f} % "
                f"[{ci[0]:.1f}, {ci[1]:.1f}], n={pw['n']})")  # fmt: skip

    note = f"Judges: verifiable = {with_card(r['judge_verifiable'])}; open = {with_card(r['judge_open'])}."
    if r["judge_open_heuristic"]:
        note += " **The open-prompt judge is a HEURISTIC (ci tier only): its numbers mean nothing.**"
    return note


def reported_md(tables: list[dict[str, Any]], ids: list[str] | None = None) -> str:
    out = []
    for t in tables:
        if ids and t["table_id"] not in ids:
            continue
        out.append(
            f"**{t['table_id']}** (arXiv {t['paper'].split('arXiv ')[-1].rstrip(')')} {t['version']}"
            f"{', ' + t['source_status'] if t.get('source_status') else ''}): {t['caption']}\n"
        )
        rows = [[row.get(c) for c in t["columns"]] if isinstance(row, dict) else row for row in t["rows"]]
        out.append(md_table(t["columns"], rows))
    return "\n".join(out)


def plot(offline: dict[str, list[dict]], online: list[dict], path: Path) -> Any:
    """Writes the PNG and returns the (closed) Figure, whose artists tests inspect."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for base, rows in offline.items():
        xs = range(len(rows))
        for key, off, color in (("accuracy", -0.18, "tab:blue"), ("win_rate", 0.18, "tab:orange")):
            # a value not computed (e.g. a row without a win rate) shows "n/a", never a bar of height 0
            bars_or_missing(
                axes[0],
                [x + off for x in xs],
                [r[key] for r in rows],
                0.36,
                ci=[r[f"{key}_ci95"] for r in rows],
                capsize=3,
                color=color,
                label=f"{key.replace('_', ' ')} ({base})",
            )
        axes[0].set_xticks(list(xs), [r["method"] for r in rows], rotation=25, ha="right")
    axes[0].set_ylabel("% (95% CI)")
    axes[0].set_title("Offline (Table 2 analogue)")
    axes[0].set_ylim(0, 75)
    axes[0].legend(fontsize=8, loc="upper left", ncol=2)
    its = list(range(len(online)))
    for key, color in (("accuracy", "tab:blue"), ("win_rate", "tab:orange")):
        ci = [r[f"{key}_ci95"] for r in online]
        line_or_missing(axes[1], its, [r[key] for r in online], "o-", ci=ci, color=color, label=key.replace("_", " "))
    axes[1].set_xticks(its, [r["method"] for r in online])
    axes[1].set_title("Online iterations (Table 6 analogue)")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"CUT reproduction, tier {online[0]['tier'] if online else ''}: oracle accuracy and win rate vs base")
    rows = [r for rs in offline.values() for r in rs] + online  # the win rates' judges, as the tables name them
    judges = dict.fromkeys(f"`{r[k]}` ({k.removeprefix('judge_')} prompts)" for r in rows
                           for k in ("judge_open", "judge_verifiable") if r.get(k))  # fmt: skip
    judge_footer(fig, list(judges), heuristic=any(r.get("judge_open_heuristic") for r in rows))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m alignrepro.methods.cut.aggregate", description=__doc__)
    p.add_argument("--spec-json", required=True, help="tier, bases, methods, iterations, model folders (from rules)")
    p.add_argument("--reported", type=Path, required=True, help="methods/cut/reported.yaml")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--cards", nargs="*", type=Path, default=[], help="judge card JSONs (results/judges/*.json)")
    p.add_argument("--wandb-json", default='{"mode": "disabled", "project": "alignrepro"}', help="W&B settings")
    args = p.parse_args(argv)
    spec = json.loads(args.spec_json)
    out = args.out_dir
    reported = yaml.safe_load(args.reported.read_text())
    cards = {c["judge_id"]: c for c in map(read_json, args.cards)}

    labels = {"base": "Base"} | {n: r["label"] for n, r in spec["rows"].items()}
    offline = {b: [model_row(spec, b, m, labels[m]) for m in ["base", *spec["methods"]]] for b in spec["bases"]}
    ob = spec["online_base"]
    online = [{**model_row(spec, ob, "base", "Base (iter 0)"), "n_judgments": None, "judged_positive_pct": None,
               "judged_positive_ci95": None}]  # fmt: skip
    online += [model_row(spec, ob, f"cut_iter{k}", f"CUT {k}+") for k in range(1, spec["iterations"] + 1)]
    for b, rows in offline.items():
        add_paired_accuracy(spec, b, rows)
        add_seed_columns(spec, b, rows)
    add_paired_accuracy(spec, ob, online)
    for k, row in enumerate(online[1:], 1):
        trip = Path(spec["root"]) / "online" / f"iter{k}" / "triplets.jsonl"
        judged = [json.loads(line) for line in trip.read_text().splitlines() if line.strip()]
        row["n_judgments"] = len(judged)
        perfect = sum((j["judgment"] or "").lower().startswith("perfect") for j in judged)
        row["judged_positive_pct"] = 100 * perfect / max(1, len(judged))
        row["judged_positive_ci95"] = wilson(perfect, len(judged))
    flat = [r for rows in offline.values() for r in rows]
    models = {b: read_json(Path(spec["model_dirs"][b]["base"]) / "model.json") for b in spec["bases"]}
    prov = provenance(
        tier=spec["tier"],
        config=spec,
        seed=spec["seed"],
        base_models={
            b: {k: m.get(k) for k in ("name", "weights", "weights_sha256", "gguf_sha256")} for b, m in models.items()
        },
        judges={"verifiable": flat[0]["judge_verifiable"], "open": flat[0]["judge_open"]},
        reported_sha256=sha256_file(args.reported),
    )
    atomic_write_json(out / "provenance.json", prov)
    atomic_write_text(out / "table2_offline.csv", to_csv(flat))
    atomic_write_text(out / "table6_online.csv", to_csv(online))

    head = (
        f"Tier **{spec['tier']}**, commit `{prov['git_commit'][:12]}`, seed {prov['seed']}, config "
        f"`{prov['config_hash']}`; models: "
        + ", ".join(f"`{b}` ({(m.get('weights_sha256') or m['weights'])[:12]})" for b, m in models.items())
        + ". "
        + judge_note(flat, cards)
    )
    t2 = ["# CUT Table 2 analogue: offline alignment on judgments\n", "## Reproduced\n", head + "\n"]
    for b, rows in offline.items():
        t2 += [f"\n### base `{b}`\n", reproduced_md(rows, "method")]
    t2 += [
        "\n## Reported (paper; different models, data and judge — compare directions, not values)\n",
        reported_md(reported, ["v1-headline", "Table 2"]),
    ]
    atomic_write_text(out / "table2_offline.md", "\n".join(t2))
    t6 = [
        "# CUT Table 6 analogue: online iterative alignment\n",
        "## Reproduced\n",
        head + "\n",
        reproduced_md(online, "model"),
        "\n"
        + md_table(
            ["iteration", "judgments", "judged 'Perfect' % [95% CI]"],
            [
                [r["method"], r["n_judgments"], f"{r['judged_positive_pct']:.1f} {ci(r['judged_positive_ci95'])}"]
                for r in online[1:]
            ],
        ),
        "\n## Reported (paper)\n",
        reported_md(reported, ["Table 6"]),
    ]
    atomic_write_text(out / "table6_online.md", "\n".join(t6))
    atomic_write_text(out / "reported.md", "# CUT: all reported tables (as reported)\n\n" + reported_md(reported))
    plot(offline, online, out / "cut_results.png")
    log_to_wandb(
        json.loads(args.wandb_json),
        Path(spec["root"]),
        spec["tier"],
        {"table2_offline": flat, "table6_online": online},
        prov,
    )

    best = max(flat, key=lambda r: r["accuracy"] or 0)
    base_row = offline[spec["bases"][0]][0]
    cut_row = next(r for r in offline[spec["bases"][0]] if r["model_id"] == "cut")
    summary = [
        f"CUT at tier {spec['tier']} ({', '.join(spec['bases'])}):",
        f"  base accuracy {pct(base_row['accuracy'])}% -> CUT {pct(cut_row['accuracy'])}% "
        f"(win rate vs base {pct(cut_row['win_rate'])}%); best method by accuracy: {best['method']}",
        "  online: " + " -> ".join(f"{r['method']} {pct(r['accuracy'])}%" for r in online),
        f"  tables: {out}/table2_offline.md, {out}/table6_online.md; plot: {out}/cut_results.png",
    ]
    atomic_write_text(out / "summary.md", "\n".join(summary) + "\n")


if __name__ == "__main__":
    main()
