"""Claims with verdicts: each paper's main claims (methods/<paper>/claims.yaml), tested on its reproduced tables.

A claim names the numbers the paper reports and a test on the reproduced tables, and gets a verdict:
  holds         the reproduced effect's 95 % CI excludes 0 in the direction the paper claims;
  reversed      the CI excludes 0 in the other direction;
  inconclusive  the CI includes 0 (why: the minimum detectable effect at that n, alpha .05 two-sided, power .8:
                alignrepro.stats' power formula from the per-item data or the table's `mde` column, else
                approximated from the CI's width), or a judge that made the column is at chance on its judge card
                (agreement CI includes 50 %) or a heuristic: such a column never decides;
  untestable    no reproduced column carries the effect (why: the claim's reason, or the table/row/CI missing).

Tests (closed schema, see `validate`): `cell` reads one table row's value with its CI (a paired difference the
aggregate already wrote, or a win rate against `null_value: 50`; optional `mde` and `p` columns); `paired_items`
bootstraps the paired difference from two per-item JSON files (alignrepro.stats.paired_compare, what the aggregates
use: with McNemar's or the sign test's p and the MDE); `untestable` gives the reason.
Strings may hold `{paper.key.path}` or `{paper.key.path-1}`, resolved in the run's config (`--config-json`).

The engine never imports a paper: the claims file and the tables are read by path.
`python -m alignrepro.claims --help`
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
from pathlib import Path
from typing import Any

from alignrepro.errors import UserError
from alignrepro.reporting import plot_value

VERDICTS = ("holds", "reversed", "inconclusive", "untestable")
Z95, Z80 = 1.959964, 0.841621  # two-sided 95 % and 80 % power: MDE = (Z95 + Z80) * SE (when only a CI is known)
TOP_KEYS = {"paper": True, "claims": True}
CLAIM_KEYS = {"id": True, "claim": True, "reported": True, "direction": True, "test": True}
REPORTED_KEYS = {"effect": True, "unit": True, "numbers": True, "source": True, "note": False}
NUMBER_KEYS = {"table": True, "row": True, "column": True, "value": True}
COMMON_TEST = {"kind": True, "unit": False, "scale": False, "judges": False, "card": False, "needs_target": False}
TEST_KEYS = {
    "cell": COMMON_TEST | {"table": True, "row": True, "value": True, "ci": False, "n": False, "null_value": False,
                           "mde": False, "p": False},
    "paired_items": COMMON_TEST | {"a": True, "b": True},
    "untestable": {"kind": True, "reason": True},
}  # fmt: skip
SIDE_KEYS = {"file": True, "items": True}
_REF = re.compile(r"\{([A-Za-z_][\w.-]*?)(-\d+)?\}")


def _keys(path: Path, where: str, obj: Any, spec: dict[str, bool]) -> None:
    if not isinstance(obj, dict):
        raise UserError(f"{path}: field '{where}' must be a mapping, not {type(obj).__name__}")
    for key in obj:
        if key not in spec:
            raise UserError(f"{path}: field '{where}.{key}': unknown key {key!r} (allowed: {', '.join(spec)})")
    for key, required in spec.items():
        if required and key not in obj:
            raise UserError(f"{path}: field '{where}.{key}' is missing")


def _typed(path: Path, field: str, value: Any, types: tuple[type, ...], none: bool = False) -> None:
    if (value is None and none) or (isinstance(value, types) and not isinstance(value, bool)):
        return
    raise UserError(f"{path}: field '{field}' must be {' or '.join(t.__name__ for t in types)}, not {value!r}")


def validate(data: Any, path: Path) -> dict[str, Any]:
    """The claims file's tree, checked against the closed schema; an error names the file and the field."""
    _keys(path, "claims.yaml", data, TOP_KEYS)
    _typed(path, "paper", data["paper"], (str,))
    if not isinstance(data["claims"], list) or not data["claims"]:
        raise UserError(f"{path}: field 'claims' must be a non-empty list")
    seen = set()
    for i, c in enumerate(data["claims"]):
        at = f"claims[{i}]"
        _keys(path, at, c, CLAIM_KEYS)
        _typed(path, f"{at}.id", c["id"], (str,))
        at = f"claims[{i}] ({c['id']})"
        if c["id"] in seen:
            raise UserError(f"{path}: field '{at}.id': duplicate id {c['id']!r}")
        seen.add(c["id"])
        _typed(path, f"{at}.claim", c["claim"], (str,))
        if c["direction"] not in ("higher", "lower"):
            raise UserError(f"{path}: field '{at}.direction' must be 'higher' or 'lower', not {c['direction']!r}")
        rep = c["reported"]
        _keys(path, f"{at}.reported", rep, REPORTED_KEYS)
        _typed(path, f"{at}.reported.effect", rep["effect"], (int, float), none=True)
        for k in ("unit", "source"):
            _typed(path, f"{at}.reported.{k}", rep[k], (str,))
        if not isinstance(rep["numbers"], list):
            raise UserError(f"{path}: field '{at}.reported.numbers' must be a list")
        for j, num in enumerate(rep["numbers"]):
            _keys(path, f"{at}.reported.numbers[{j}]", num, NUMBER_KEYS)
            _typed(path, f"{at}.reported.numbers[{j}].value", num["value"], (int, float))
        test = c["test"]
        if not isinstance(test, dict) or test.get("kind") not in TEST_KEYS:
            kind = test.get("kind") if isinstance(test, dict) else test
            raise UserError(f"{path}: field '{at}.test.kind' must be one of {', '.join(TEST_KEYS)}, not {kind!r}")
        _keys(path, f"{at}.test", test, TEST_KEYS[test["kind"]])
        for side in ("a", "b") if test["kind"] == "paired_items" else ():
            _keys(path, f"{at}.test.{side}", test[side], SIDE_KEYS)
        if test["kind"] == "cell":
            if not isinstance(test["row"], dict) or not test["row"]:
                raise UserError(f"{path}: field '{at}.test.row' must be a mapping of column: value")
            _typed(path, f"{at}.test.null_value", test.get("null_value", 0), (int, float))
        _typed(path, f"{at}.test.scale", test.get("scale", 1), (int, float))
        if test.get("card", "pairwise") not in ("pairwise", "rating"):
            raise UserError(f"{path}: field '{at}.test.card' must be 'pairwise' or 'rating', not {test['card']!r}")
        if not isinstance(test.get("judges", []), list):
            raise UserError(f"{path}: field '{at}.test.judges' must be a list of config key paths")
    return data


def load(path: str | Path, paper: str | None = None) -> dict[str, Any]:
    from alignrepro.config import load_yaml  # strict: duplicate keys are errors naming the file

    path = Path(path)
    data = validate(load_yaml(path), path)
    if paper is not None and data["paper"] != paper:
        raise UserError(f"{path}: field 'paper' is {data['paper']!r}, expected {paper!r}")
    return data


def lookup(config: dict[str, Any], dotted: str) -> Any:
    """config["a"]["b"][0] for "a.b.0"; a missing key is an error naming the path."""
    node: Any = config
    for part in dotted.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise UserError(f"config key {dotted!r} (named by a claims file) does not exist")
    return node


def resolve(text: str, config: dict[str, Any]) -> str:
    """'{ld_align.iterations-1}' -> '1' when ld_align.iterations is 2."""

    def sub(m: re.Match[str]) -> str:
        value = lookup(config, m.group(1))
        return str(value + int(m.group(2))) if m.group(2) else str(value)

    return _REF.sub(sub, text)


def judge_names(claims: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """The evals.judges names behind every judged column the claims use (their cards are the rule's inputs)."""
    names = [lookup(config, j) for c in claims["claims"] for j in c["test"].get("judges", [])]
    return list(dict.fromkeys(n for n in names if n))


# ---------------------------------------------------------------------------------------------------- evaluation


def _num(x: Any) -> float | None:
    """A table cell as a finite number, or None (missing, not a number, infinite)."""
    v = plot_value(x)
    return v if v is not None and math.isfinite(v) else None


def _ci(x: Any) -> list[float] | None:
    if isinstance(x, str):
        try:
            x = json.loads(x) if x.strip() else None
        except json.JSONDecodeError:
            return None
    if isinstance(x, list | tuple) and len(x) == 2 and all(_num(v) is not None for v in x):
        return [float(x[0]), float(x[1])]
    return None


def read_table(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        return data if isinstance(data, list) else data.get("rows", [])
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _items(path: Path, keys: str) -> dict[str, float]:
    node: Any = json.loads(path.read_text())
    for k in keys.split("."):
        node = node[k]
    return {str(k): float(v) for k, v in node.items() if _num(v) is not None}


def card_gate(names: list[str], block: str, cards_dir: Path) -> str | None:
    """Why the judged column cannot decide (judge at chance / heuristic / no card), or None when every judge may."""
    for name in names:
        path = cards_dir / f"{name}.json"
        if not path.is_file():
            return f"judge `{name}` has no judge card ({path})"
        card = json.loads(path.read_text())
        if card.get("heuristic"):
            return f"judge `{name}` is a heuristic (ci tier): its column means nothing"
        b = card.get(block) or {}
        ci = _ci(b.get("ci95"))
        if ci is None:
            return f"judge `{name}`'s card has no {block} agreement CI"
        if ci[0] <= 50 <= ci[1]:
            return (f"judge `{name}` at chance on its card ({block} agreement {_num(b.get('agreement')) or 0:.1f} % "
                    f"[{ci[0]:.1f}, {ci[1]:.1f}], n={b.get('n')})")  # fmt: skip
    return None


def _untestable(why: str) -> dict[str, Any]:
    return {"effect": None, "ci": None, "n": None, "verdict": "untestable", "why": why}


def measure(test: dict[str, Any], root: Path, config: dict[str, Any], seed: int, n_boot: int) -> dict[str, Any]:
    """The reproduced effect (effect, ci, n) of one test, or untestable with the reason."""
    from alignrepro.stats import paired_compare

    need = f" (target {test['needs_target']})" if test.get("needs_target") else ""
    scale = test.get("scale", 1)
    if test["kind"] == "untestable":
        return _untestable(test["reason"])
    if test["kind"] == "paired_items":
        sides = {s: (root / resolve(test[s]["file"], config), test[s]["items"]) for s in ("a", "b")}
        for file, _ in sides.values():
            if not file.is_file():
                return _untestable(f"{file} was not written{need}")
        try:
            a, b = (_items(f, k) for f, k in sides.values())
        except (KeyError, TypeError, AttributeError) as e:
            return _untestable(f"no per-item values {e} in {sides['a'][0]} / {sides['b'][0]}")
        d = paired_compare(a, b, n_boot, seed)
        effect, ci, n, mde, p = d["diff"], d["ci"], d["n"], d["mde"], d["p_value"]
        if mde is None and ci is not None:
            return {"effect": effect * scale, "ci": [ci[0] * scale, ci[1] * scale], "n": n, "p_value": p,
                    "mde": None, "mde_why": d["mde_why"]}  # fmt: skip
    else:
        table = root / "tables" / resolve(test["table"], config)
        if not table.is_file():
            return _untestable(f"{table} was not written{need}")
        match = {k: resolve(str(v), config) for k, v in test["row"].items()}
        rows = [r for r in read_table(table) if all(str(r.get(k)) == v for k, v in match.items())]
        if len(rows) != 1:
            return _untestable(f"{len(rows)} rows of {table.name} match {match} (need exactly 1)")
        row, null = rows[0], test.get("null_value", 0)
        value = _num(row.get(test["value"]))
        if value is None:
            return _untestable(f"{table.name} {match}: no value in column {test['value']!r} ({row.get('verdict', '')})")
        ci = _ci(row.get(test["ci"])) if test.get("ci") else None
        effect, ci = value - null, None if ci is None else [ci[0] - null, ci[1] - null]
        n = _num(row.get(test["n"])) if test.get("n") else None
        n = None if n is None else int(n)
        mde = _num(row.get(test["mde"])) if test.get("mde") else None
        p = _num(row.get(test["p"])) if test.get("p") else None
        if ci is None:
            return {**_untestable(f"{table.name} {match}: column {test['value']!r} has no CI"), "effect": effect}
    if effect is None or ci is None:
        return {**_untestable(f"fewer than 2 paired items (n={n})"), "effect": effect, "n": n}
    return {"effect": effect * scale, "ci": [ci[0] * scale, ci[1] * scale], "n": n, "p_value": p,
            "mde": None if mde is None else abs(mde * scale)}  # fmt: skip


def verdict(claim: dict[str, Any], m: dict[str, Any], cards_dir: Path, config: dict[str, Any]) -> dict[str, Any]:
    """holds / reversed / inconclusive (with why) from the measured effect; a judge at chance never decides."""
    if m.get("verdict") == "untestable":
        return m
    test, rep = claim["test"], claim["reported"]
    sign = 1 if claim["direction"] == "higher" else -1
    lo, hi = m["ci"]
    gate = card_gate([lookup(config, j) for j in test.get("judges", [])], test.get("card", "pairwise"), cards_dir)
    if gate:
        return m | {"verdict": "inconclusive", "why": gate}
    if lo > 0 or hi < 0:
        holds = (lo > 0) == (sign > 0)
        why = "CI excludes 0 in the claimed direction" if holds else "CI excludes 0 against the claimed direction"
        return m | {"verdict": "holds" if holds else "reversed", "why": why}
    if m.get("mde") is None and m.get("mde_why"):
        return m | {"verdict": "inconclusive", "why": f"CI includes 0; no minimum detectable effect: {m['mde_why']}"}
    mde, approx = m.get("mde"), ""
    if mde is None:  # no per-item power calculation: 80 % power at the CI's standard error
        mde, approx = (Z95 + Z80) * (hi - lo) / (2 * Z95), " (approx. from the CI width)"
    n = f"n={m['n']}" if m["n"] is not None else "this n"
    n += approx
    reported = rep["effect"]
    if reported is None:
        why = f"minimum detectable effect {mde:.3g} at {n}; the paper gives no effect size to compare"
    elif test.get("unit") == rep["unit"]:
        cmp = ">" if mde > abs(reported) else "<="
        why = f"minimum detectable effect {mde:.3g} {cmp} reported effect {abs(reported):.3g} at {n}"
    else:
        why = (f"minimum detectable effect {mde:.3g} {test.get('unit') or ''} at {n} (reported effect {reported:.3g} "
               f"{rep['unit']}: another scale)")  # fmt: skip
    return m | {"verdict": "inconclusive", "why": why.replace("  ", " ")}


def describe(test: dict[str, Any], config: dict[str, Any]) -> str:
    if test["kind"] == "untestable":
        return "—"
    if test["kind"] == "paired_items":
        a, b = (f"{resolve(test[s]['file'], config)}:{test[s]['items']}" for s in ("a", "b"))
        return f"paired bootstrap a − b per item: a={a}, b={b}"
    row = ", ".join(f"{k}={resolve(str(v), config)}" for k, v in test["row"].items())
    null = f" − {test['null_value']}" if test.get("null_value") else ""
    return f"tables/{resolve(test['table'], config)} [{row}] `{test['value']}`{null} (CI `{test.get('ci')}`)"


def evaluate(claims_path: Path, paper: str, tier: str, root: Path, config: dict[str, Any], cards_dir: Path,
             seed: int = 0, n_boot: int = 2000) -> dict[str, Any]:  # fmt: skip
    claims = load(claims_path, paper)
    out = []
    for c in claims["claims"]:
        m = verdict(c, measure(c["test"], root, config, seed, n_boot), cards_dir, config)
        out.append({"id": c["id"], "claim": c["claim"], "direction": c["direction"], "reported": c["reported"],
                    "test": describe(c["test"], config), "unit": c["test"].get("unit"), **m})  # fmt: skip
    return {"paper": paper, "tier": tier, "claims_file": str(claims_path), "claims": out}


def main(argv: list[str] | None = None) -> None:
    from alignrepro.claims_report import write_cross, write_paper

    p = argparse.ArgumentParser(prog="python -m alignrepro.claims", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = p.add_subparsers(dest="cmd", required=True)
    one = sub.add_parser("paper", help="one paper's claims.md|csv|json from its claims.yaml and tables")
    one.add_argument("--claims", type=Path, required=True, help="methods/<paper>/claims.yaml")
    one.add_argument("--paper", required=True)
    one.add_argument("--tier", required=True)
    one.add_argument("--root", type=Path, required=True, help="results/<paper>/<tier> (tables/ under it)")
    one.add_argument("--config-json", default="{}", help="the run's config (at least the paper's section)")
    one.add_argument("--cards-dir", type=Path, default=Path("results/judges"), help="judge cards <name>.json")
    one.add_argument("--seed", type=int, default=0)
    one.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for paired_items tests")
    one.add_argument("--out-dir", type=Path, required=True)
    cross = sub.add_parser("cross", help="the cross-paper claims.md|csv|json from the papers' claims.json")
    cross.add_argument("--inputs", type=Path, nargs="*", default=[], help="results/<paper>/<tier>/tables/claims.json")
    cross.add_argument("--tier", required=True)
    cross.add_argument("--out-dir", type=Path, required=True)
    args = p.parse_args(argv)
    if args.cmd == "paper":
        res = evaluate(args.claims, args.paper, args.tier, args.root, json.loads(args.config_json), args.cards_dir,
                       args.seed, args.bootstrap)  # fmt: skip
        write_paper(res, args.out_dir)
    else:
        write_cross([json.loads(p.read_text()) for p in args.inputs], args.tier, args.out_dir)


if __name__ == "__main__":
    main()
