"""Writes the claims tables (alignrepro.claims): one paper's claims.md|csv|json and the cross-paper one."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from alignrepro.io import atomic_write_json, atomic_write_text
from alignrepro.reporting import md_table, to_csv

VERDICT_ORDER = ("holds", "reversed", "inconclusive", "untestable")


def _g(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.3g}"


def reproduced_cell(c: dict[str, Any]) -> str:
    if c["effect"] is None:
        return "—"
    ci = f" [{_g(c['ci'][0])}, {_g(c['ci'][1])}]" if c.get("ci") else ""
    n = f" (n={c['n']}" + (f", p={c['p_value']:.2g}" if c.get("p_value") is not None else "") + ")"
    n = n if c.get("n") is not None else ""
    return f"{_g(c['effect'])}{ci}{n}" + (f" {c['unit']}" if c.get("unit") else "")


def reported_cell(c: dict[str, Any]) -> str:
    r = c["reported"]
    nums = "; ".join(f"{n['table']} {n['row']} {n['column']} = {n['value']}" for n in r["numbers"])
    effect = "no effect size reported" if r["effect"] is None else f"{r['effect']:+g} {r['unit']}"
    return f"{effect} ({nums}; {r['source']})" if nums else f"{effect} ({r['source']})"


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"paper": result["paper"], "tier": result["tier"], "id": c["id"], "claim": c["claim"],
         "direction": c["direction"], "reported_effect": c["reported"]["effect"],
         "reported_unit": c["reported"]["unit"],
         "reported_source": c["reported"]["source"], "effect": c["effect"], "ci95": c["ci"], "n": c["n"],
         "p_value": c.get("p_value"), "mde": c.get("mde"),
         "unit": c.get("unit"), "test": c["test"], "verdict": c["verdict"], "why": c["why"]}
        for c in result["claims"]
    ]  # fmt: skip


def paper_md(result: dict[str, Any], level: str = "#") -> str:
    counts = Counter(c["verdict"] for c in result["claims"])
    head = [
        f"{level} Claims and verdicts: {result['paper']} (tier {result['tier']})\n",
        f"Claims file `{result['claims_file']}`. "
        + ", ".join(f"{counts[v]} {v}" for v in VERDICT_ORDER)
        + ". A verdict reads the reproduced effect's 95 % CI: holds (excludes 0 in the claimed direction), reversed "
        "(excludes 0 the other way), inconclusive (includes 0, or a judge at chance on its card made the column), "
        "untestable (no reproduced column). Reported effects come from other models, data and judges: compare "
        "directions, not values.\n",
    ]
    body = [[f"`{c['id']}`", c["claim"], reported_cell(c), f"{c['direction']}", reproduced_cell(c), c["test"],
             f"**{c['verdict']}**", c["why"]] for c in result["claims"]]  # fmt: skip
    header = ["id", "claim", "reported", "claimed direction", "reproduced effect [95% CI]", "test", "verdict", "why"]
    return "\n".join(head) + "\n" + md_table(header, body)


def write_paper(result: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "claims.json", result)
    atomic_write_text(out_dir / "claims.csv", to_csv(rows(result)))
    atomic_write_text(out_dir / "claims.md", paper_md(result))


def write_cross(results: list[dict[str, Any]], tier: str, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    flat = [r for res in results for r in rows(res)]
    overview = [[res["paper"], *(sum(c["verdict"] == v for c in res["claims"]) for v in VERDICT_ORDER)]
                for res in results]  # fmt: skip
    md = [
        f"# Claims and verdicts, all papers (tier {tier})\n",
        md_table(["paper", *VERDICT_ORDER], overview),
        *(paper_md(res, "##") for res in results),
    ]
    atomic_write_text(out_dir / "claims.md", "\n".join(md))
    atomic_write_json(out_dir / "claims.json", {"tier": tier, "papers": results})
    if flat:
        atomic_write_text(out_dir / "claims.csv", to_csv(flat))
    else:
        atomic_write_text(out_dir / "claims.csv", "paper,tier,id,verdict\n")
