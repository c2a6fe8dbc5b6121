"""MoTE's paired comparisons: MoTE minus each Table 1 baseline, each Table 3 prompting method minus plain prompting,
per column on the same prompts (the per-prompt values evaluate.py keeps): percentile-bootstrap 95 % CI, the exact
McNemar test for rates or the sign test for ratings, and the minimum detectable effect at that n
(alignrepro.stats.paired_compare). Written by aggregate.py as tables/differences.csv and a section of tables.md."""

from __future__ import annotations

from typing import Any

from alignrepro.reporting import md_table
from alignrepro.stats import paired_compare

PAIRED_COLS = ("help", "harm", "harm_help", "harm_strmatch", "not_overrefuse")  # per-prompt values (evaluate.py)
RATES = {"harm", "harm_strmatch", "not_overrefuse"}  # 0/100 or 0/1 per prompt: McNemar; the others are 1-10 ratings
PLAIN = "prompt-plain"


def differences(judged: Any, table: str, a: tuple[str, str], rows: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """System a (label, system) minus each row's (label, row name, system) of one evaluation file (aggregate.Judged),
    per column; a file written before per-prompt values were kept says so."""
    out = []
    mine = judged.d["systems"][a[1]].get("per_item")
    for label, name, system in rows:
        theirs = judged.d["systems"][system].get("per_item")
        for col in PAIRED_COLS:
            row = {"table": table, "a": a[0], "b": label, "b_row": name, "metric": col, "base": judged.base}
            if not mine or not theirs:
                out.append(row | {"diff": None, "ci": None, "n": 0, "note": "no per-prompt values"})
                continue
            d = paired_compare(mine[col], theirs[col], 2000, judged.spec["seed"], binary=col in RATES)
            out.append(row | d | {"note": "" if d["n"] else "no prompt with a value on both sides"})
    return out


def build_differences(spec: dict[str, Any], judged: list[Any], prompting_rows: dict[str, str]) -> list[dict[str, Any]]:
    """Table 1: MoTE minus each baseline (main base); Table 3: each prompting method minus plain prompting (WVU).
    `judged`: the Table 1 files per base, then Table 3's (aggregate.build_tables)."""
    j1, j3 = judged[spec["bases"].index(spec["main"])], judged[-1]
    out = differences(j1, "table1", (f"MoTE-{spec['main']}", "MoTE"),
                      [(b["label"], b["name"], f"baseline_{b['name']}") for b in spec["baselines"]])  # fmt: skip
    for t in spec["prompting"]:
        if t != PLAIN and PLAIN in spec["prompting"]:
            out += differences(j3, "table3", (prompting_rows[t], t), [(prompting_rows[PLAIN], PLAIN, PLAIN)])
    return out


def differences_md(diffs: list[dict[str, Any]], head: dict[str, str]) -> str:
    body = []
    for d in diffs:
        if d.get("diff") is None:
            body.append([d["table"], f"{d['a']} − {d['b']}", head[d["metric"]], "n/a", d["n"], "–", d["note"]])
            continue
        mde = "n/a" if d["mde"] is None else f"{d['mde']:.3g}"
        ci = f" [{d['ci'][0]:+.2f}, {d['ci'][1]:+.2f}]" if d["ci"] else ""
        body.append([d["table"], f"{d['a']} − {d['b']}", head[d["metric"]], f"{d['diff']:+.2f}{ci}", d["n"],
                     f"{d['test']} p={d['p_value']:.2g}; MDE {mde}", d["note"] or d.get("mde_why") or ""])  # fmt: skip
    return md_table(["table", "a − b", "column", "a − b [95% CI]", "prompts", "test p; MDE", "note"], body)
