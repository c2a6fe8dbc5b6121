"""Claims with verdicts (alignrepro/claims.py): verdicts on synthetic tables, the judge-card gate, the closed schema,
and every shipped methods/*/claims.yaml against what its paper's aggregate really writes."""

from __future__ import annotations

import ast
import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from alignrepro import claims as C
from alignrepro.claims_report import write_cross, write_paper
from alignrepro.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(ROOT.glob("methods/*/claims.yaml"))


def claim(test: dict, direction: str = "higher", effect: float | None = 0.5, unit: str = "pts") -> dict:
    return {
        "id": "c1",
        "claim": "A beats B.",
        "reported": {"effect": effect, "unit": unit, "numbers": [{"table": "T1", "row": "A", "column": "x",
                                                                    "value": 1.0}], "source": "paper Table 1"},
        "direction": direction,
        "test": test,
    }  # fmt: skip


def write(tmp_path: Path, claims: list[dict], rows: list[dict] | None = None) -> Path:
    (tmp_path / "res" / "tables").mkdir(parents=True, exist_ok=True)
    if rows is not None:
        with (tmp_path / "res" / "tables" / "diffs.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()} for r in rows)
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump({"paper": "demo", "claims": claims}))
    return path


def cell_test(**extra) -> dict:
    return {"kind": "cell", "table": "diffs.csv", "row": {"a": "m", "metric": "acc"}, "value": "diff", "ci": "ci",
            "n": "n", "unit": "pts", **extra}  # fmt: skip


def run(tmp_path: Path, path: Path, config: dict | None = None, cards: Path | None = None) -> dict:
    res = C.evaluate(path, "demo", "ci", tmp_path / "res", config or {}, cards or tmp_path / "cards")
    assert len(res["claims"]) == 1
    return res["claims"][0]


ROWS = [
    {"a": "m", "metric": "acc", "diff": 0.2, "ci": [0.1, 0.3], "n": 40},
    {"a": "m", "metric": "loose", "diff": 0.05, "ci": [-0.1, 0.2], "n": 40},
]


def test_ci_excluding_zero_in_claimed_direction_holds(tmp_path):
    c = run(tmp_path, write(tmp_path, [claim(cell_test())], ROWS))
    assert c["verdict"] == "holds"
    assert c["effect"] == pytest.approx(0.2) and c["ci"] == pytest.approx([0.1, 0.3]) and c["n"] == 40


def test_ci_excluding_zero_the_other_way_is_reversed(tmp_path):
    c = run(tmp_path, write(tmp_path, [claim(cell_test(), direction="lower")], ROWS))
    assert c["verdict"] == "reversed"


def test_ci_straddling_zero_is_inconclusive_with_the_mde(tmp_path):
    t = cell_test(row={"a": "m", "metric": "loose"})
    c = run(tmp_path, write(tmp_path, [claim(t, effect=0.05)], ROWS))
    assert c["verdict"] == "inconclusive"
    mde = (C.Z95 + C.Z80) * 0.3 / (2 * C.Z95)  # the CI is 0.3 wide
    assert f"minimum detectable effect {mde:.3g} > reported effect 0.05 at n=40" in c["why"]
    # a reported effect above the MDE says so (same units): the reason is computed, not fixed text
    c = run(tmp_path, write(tmp_path, [claim(t, effect=5.0)], ROWS))
    assert f"minimum detectable effect {mde:.3g} <= reported effect 5 at n=40" in c["why"]


def test_null_value_and_scale(tmp_path):
    rows = [{"a": "m", "metric": "acc", "diff": 60.0, "ci": [54.0, 66.0], "n": 80}]
    t = cell_test(null_value=50, scale=0.01)
    c = run(tmp_path, write(tmp_path, [claim(t)], rows))
    assert c["effect"] == pytest.approx(0.10) and c["ci"] == pytest.approx([0.04, 0.16]) and c["verdict"] == "holds"
    rows[0]["ci"] = [45.0, 66.0]
    assert run(tmp_path, write(tmp_path, [claim(t)], rows))["verdict"] == "inconclusive"


def card(tmp_path: Path, name: str, lo: float, hi: float, heuristic: bool = False) -> Path:
    d = tmp_path / "cards"
    d.mkdir(exist_ok=True)
    block = {"agreement": (lo + hi) / 2, "ci95": [lo, hi], "n": 60}
    (d / f"{name}.json").write_text(json.dumps({"name": name, "heuristic": heuristic, "pairwise": block,
                                                "rating": block}))  # fmt: skip
    return d


@pytest.mark.parametrize("lo, hi, heuristic", [(42.0, 61.0, False), (49.9, 50.1, False), (70.0, 90.0, True)])
def test_judge_at_chance_or_heuristic_never_holds(tmp_path, lo, hi, heuristic):
    cards = card(tmp_path, "smalljudge", lo, hi, heuristic)
    path = write(tmp_path, [claim(cell_test(judges=["demo.judge"]))], ROWS)
    c = run(tmp_path, path, {"demo": {"judge": "smalljudge"}}, cards)
    assert c["verdict"] == "inconclusive"  # the CI [0.1, 0.3] alone would hold
    assert ("at chance on its card" in c["why"]) != heuristic and ("heuristic" in c["why"]) == heuristic
    assert "smalljudge" in c["why"]


def test_judge_above_chance_lets_the_column_decide(tmp_path):
    cards = card(tmp_path, "goodjudge", 71.0, 88.0)
    path = write(tmp_path, [claim(cell_test(judges=["demo.judge"]))], ROWS)
    assert run(tmp_path, path, {"demo": {"judge": "goodjudge"}}, cards)["verdict"] == "holds"
    # no card at all: never holds either
    path = write(tmp_path, [claim(cell_test(judges=["demo.other"]))], ROWS)
    c = run(tmp_path, path, {"demo": {"judge": "goodjudge", "other": "missing"}}, cards)
    assert c["verdict"] == "inconclusive" and "no judge card" in c["why"]


def test_paired_items_bootstrap_from_per_item_files(tmp_path):
    res = tmp_path / "res" / "eval"
    res.mkdir(parents=True)
    a = {f"q{i}": 1.0 for i in range(30)}
    b = {f"q{i}": float(i % 5 == 0) for i in range(30)}
    (res / "iter1.json").write_text(json.dumps({"per_item": {"acc": a}}))
    (res / "base.json").write_text(json.dumps({"per_item": {"acc": b}}))
    t = {"kind": "paired_items", "a": {"file": "eval/iter{demo.iterations-1}.json", "items": "per_item.acc"},
         "b": {"file": "eval/base.json", "items": "per_item.acc"}, "unit": "pts"}  # fmt: skip
    c = run(tmp_path, write(tmp_path, [claim(t)]), {"demo": {"iterations": 2}})
    assert c["n"] == 30 and c["effect"] == pytest.approx(24 / 30) and c["verdict"] == "holds"
    assert c["ci"][0] > 0 and c["ci"][1] <= 1.0
    c = run(tmp_path, write(tmp_path, [claim(t)]), {"demo": {"iterations": 3}})  # iter2.json was never written
    assert c["verdict"] == "untestable" and "iter2.json was not written" in c["why"]


def test_inconclusive_paired_items_use_the_power_formula_mde(tmp_path):
    """Binary per-item files: the MDE comes from the discordance (alignrepro.stats), not the CI width, with McNemar's p;
    a table's `mde` / `p` columns are read the same way; identical items say why no MDE exists."""
    from alignrepro.stats import mde_paired_binary

    res = tmp_path / "res" / "eval"
    res.mkdir(parents=True)
    a = {f"q{i}": float(i < 3 or i >= 30) for i in range(40)}  # 3 right only for a, 2 right only for b (q30..q39 both)
    b = {f"q{i}": float(3 <= i < 5 or i >= 30) for i in range(40)}
    (res / "a.json").write_text(json.dumps({"per_item": {"acc": a}}))
    (res / "b.json").write_text(json.dumps({"per_item": {"acc": b}}))
    t = {"kind": "paired_items", "a": {"file": "eval/a.json", "items": "per_item.acc"},
         "b": {"file": "eval/b.json", "items": "per_item.acc"}, "unit": "pts"}  # fmt: skip
    c = run(tmp_path, write(tmp_path, [claim(t, effect=0.05)]))
    mde = mde_paired_binary(40, 5 / 40)
    assert c["verdict"] == "inconclusive" and c["mde"] == pytest.approx(mde)
    assert c["p_value"] == pytest.approx(1.0)  # 3 vs 2 discordant
    assert f"minimum detectable effect {mde:.3g} > reported effect 0.05 at n=40" in c["why"]
    assert "approx" not in c["why"]
    (res / "b.json").write_text(json.dumps({"per_item": {"acc": {k: v + 0.5 for k, v in a.items()}}}))
    c = run(tmp_path, write(tmp_path, [claim(t)]))  # constant difference: no spread, no MDE, and it says so
    assert c["verdict"] == "reversed"
    (res / "b.json").write_text(json.dumps({"per_item": {"acc": {k: v * 0.5 for k, v in a.items() if v == 0}}}))
    c = run(tmp_path, write(tmp_path, [claim(t)]))  # both sides 0 on every common item: the exact test's floor
    assert c["verdict"] == "inconclusive" and c["n"] == 27 and c["mde"] == pytest.approx(6 / 27)
    same = {f"q{i}": i / 7 for i in range(40)}  # scores, identical on both sides: no spread, no MDE, and it says so
    for side in ("a", "b"):
        (res / f"{side}.json").write_text(json.dumps({"per_item": {"acc": same}}))
    c = run(tmp_path, write(tmp_path, [claim(t)]))
    assert c["verdict"] == "inconclusive" and "no minimum detectable effect: no item differs" in c["why"]
    rows = [{"a": "m", "metric": "acc", "diff": 0.05, "ci": [-0.1, 0.2], "n": 40, "mde": 0.21, "p": 0.4}]
    c = run(tmp_path, write(tmp_path, [claim(cell_test(mde="mde", p="p"), effect=0.05)], rows))
    assert c["mde"] == pytest.approx(0.21) and c["p_value"] == pytest.approx(0.4)
    assert "minimum detectable effect 0.21 > reported effect 0.05 at n=40" in c["why"]


def test_untestable_and_missing_values(tmp_path):
    c = run(tmp_path, write(tmp_path, [claim({"kind": "untestable", "reason": "no paired data"})], ROWS))
    assert c["verdict"] == "untestable" and c["why"] == "no paired data"
    rows = [{"a": "m", "metric": "acc", "diff": "", "ci": "", "n": 0, "verdict": "not run"}]
    c = run(tmp_path, write(tmp_path, [claim(cell_test())], rows))
    assert c["verdict"] == "untestable" and "not run" in c["why"]
    c = run(tmp_path, write(tmp_path, [claim(cell_test(table="absent.csv", needs_target="demo_more"))], ROWS))
    assert c["verdict"] == "untestable" and "target demo_more" in c["why"]


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda c: c.update(typo=1), "claims[0].typo"),
        (lambda c: c.pop("direction"), "claims[0].direction"),
        (lambda c: c["reported"].pop("source"), "reported.source"),
        (lambda c: c["test"].update(colum="x"), "test.colum"),
        (lambda c: c["test"].pop("value"), "test.value"),
        (lambda c: c.update(direction="up"), "direction"),
        (lambda c: c["test"].update(kind="magic"), "test.kind"),
        (lambda c: c["reported"]["numbers"][0].pop("value"), "numbers[0].value"),
    ],
)
def test_bad_claims_file_names_the_file_and_field(tmp_path, edit, field):
    c = claim(cell_test())
    edit(c)
    path = write(tmp_path, [c], ROWS)
    with pytest.raises(UserError) as e:
        C.load(path)
    assert str(path) in str(e.value) and field in str(e.value)


def test_reports_and_cross_paper_table(tmp_path):
    res = C.evaluate(write(tmp_path, [claim(cell_test())], ROWS), "demo", "ci", tmp_path / "res", {}, tmp_path)
    write_paper(res, tmp_path / "out")
    assert "**holds**" in (tmp_path / "out" / "claims.md").read_text()
    assert next(csv.DictReader((tmp_path / "out" / "claims.csv").open()))["verdict"] == "holds"
    other = {**res, "paper": "other", "claims": [{**res["claims"][0], "verdict": "reversed"}]}
    write_cross([res, other], "ci", tmp_path / "all")
    md = (tmp_path / "all" / "claims.md").read_text()
    assert "| demo | 1 | 0 | 0 | 0 |" in md and "| other | 0 | 1 | 0 | 0 |" in md


def test_cli_help():
    out = subprocess.run([sys.executable, "-m", "alignrepro.claims", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "paper" in out.stdout and "cross" in out.stdout


# ---------------------------------------------------------------- the shipped claims files against their aggregates


def string_constants(path: Path) -> set[str]:
    return {n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant)
            and isinstance(n.value, str)}  # fmt: skip


def written_columns(folder: Path) -> set[str]:
    """String constants of the paper's aggregate and the paper modules it imports (e.g. mote/paired.py), plus
    alignrepro.stats' keys when they write its paired differences."""
    agg = folder / "aggregate.py"
    imported = re.findall(rf"alignrepro\.methods\.{folder.name}\.(\w+)", agg.read_text())
    mods = [agg] + [folder / f"{m}.py" for m in imported]
    names = set().union(*(string_constants(m) for m in mods if m.is_file()))
    if any("paired_difference" in m.read_text() or "paired_compare" in m.read_text() for m in mods if m.is_file()):
        names |= string_constants(ROOT / "alignrepro" / "stats.py")
    return names


def test_every_paper_in_the_default_target_ships_claims():
    config = yaml.safe_load((ROOT / "config" / "defaults.yaml").read_text())
    assert {p.parent.name for p in SHIPPED} >= set(config["papers"])


@pytest.mark.parametrize("path", SHIPPED, ids=[p.parent.name for p in SHIPPED])
def test_shipped_claims_name_what_the_aggregate_writes(path):
    from alignrepro.config import resolve_config
    from alignrepro.papers import discover

    paper = path.parent.name
    data = C.load(path, paper)
    consts = written_columns(path.parent)
    rules = (path.parent / "rules.smk").read_text()
    configs = {t: resolve_config({"tier": t}) for t in ("ci", "tiny", "full")}
    for c in data["claims"]:
        t = c["test"]
        if t["kind"] == "cell":
            name = Path(t["table"]).name
            assert any(s.endswith(name) for s in consts), f"{c['id']}: {name} is not written by the aggregate"
            for col in [t["value"], t.get("ci"), t.get("n"), t.get("mde"), t.get("p"), *t["row"]]:
                assert col is None or col in consts, f"{c['id']}: column {col!r} is not written by the aggregate"
            rows = set(discover()[paper].rows)  # a row name of the paper's manifest (the aggregate writes it)
            for v in t["row"].values():  # a literal row value is one the aggregate writes
                assert "{" in str(v) or str(v) in consts | rows or str(v) in rules, f"{c['id']}: row value {v!r}"
        elif t["kind"] == "paired_items":
            for side in ("a", "b"):
                *keys, item = t[side]["items"].split(".")
                assert item in consts and all(k in consts for k in keys), f"{c['id']}: {t[side]['items']}"
                assert f"_R}}/{t[side]['file'].split('/')[0]}/" in rules, f"{c['id']}: {t[side]['file']}"
        else:
            assert len(t["reason"]) > 20
        for cfg in configs.values():  # every placeholder and judge resolves at every tier
            strings = [t.get("table", ""), *map(str, t.get("row", {}).values())]
            strings += [t[s]["file"] for s in ("a", "b") if s in t]
            for s in strings:
                assert "{" not in C.resolve(s, cfg)
            assert all(isinstance(n, str) and n for n in (C.lookup(cfg, j) for j in t.get("judges", [])))
