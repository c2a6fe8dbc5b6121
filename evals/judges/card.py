"""Judge cards: how far a judge configuration can be trusted, measured on the shipped labelled set.

For each judge: agreement with the known better answer (95 % Wilson CI), per kind of pair; position bias (how often
a verdict picks the answer shown first, whatever its label) and label-token bias (how often it picks the label `m`,
whatever the slot: judges that can swap their labels are asked in both orders with both labellings), each with a
bootstrap CI over pairs; order consistency; length bias; tie behaviour; the probability mass on the allowed answer
tokens, unparsable judgments (mass below the judge's threshold) and prompts cut to the judge's max length; and cost
(seconds and dollars per 1,000 judgments). Measured for both ways the suite uses a judge: pairwise preferences
(AlpacaEval) and single-answer ratings (MT-Bench single grading, safety).
CLI: `python -m alignrepro.evals.judges.card --help`.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path
from typing import Any

from alignrepro.data.records import Record
from alignrepro.evals.judges.labelled_set import SHIPPED, VERSION
from alignrepro.evals.verifiable.accuracy import wilson
from alignrepro.io import atomic_write_json, atomic_write_text, read_jsonl, sha256_file
from alignrepro.judges import JudgeSpec, make_judge
from alignrepro.judges.base import Judgment, PairItem, last_judgments, swapped
from alignrepro.provenance import provenance
from alignrepro.stats import bootstrap_mean_ci

log = logging.getLogger(__name__)
TIE_BAND = 0.1  # a preference within 1.5 ± this counts as "tie" when scoring tie pairs
SINGLE_PROMPT = "single-v1"  # MT-Bench's general single-answer prompt rates each answer of a pair


def _items(rows: list[dict[str, Any]]) -> list[PairItem]:
    return [
        PairItem(
            r["instruction"], r["output_1"], r["output_2"], Record.from_dict(r["record"]) if "record" in r else None
        )
        for r in rows
    ]


def _agreement(pref: float, label: float) -> float:
    """1 on the labelled side of 1.5, 0 on the other, ½ for an exact tie (as alpaca_eval scores human agreement)."""
    if abs(pref - 1.5) < 1e-9:
        return 0.5
    return float((pref > 1.5) == (label > 1.5))


def _rate_block(agree: list[float]) -> dict[str, Any]:
    n, k = len(agree), sum(agree)
    return {"n": n, "agreement": 100 * k / n if n else None, "ci95": wilson(k, n) if n else None}


def _single_prompt():
    from alignrepro.evals.mtbench.data import load_judge_prompts

    return load_judge_prompts()[SINGLE_PROMPT]


def _single_messages(prompt: Any, instruction: str, answer: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": prompt.system_prompt},
        {"role": "user", "content": prompt.prompt_template.format(question=instruction, answer=answer)},
    ]


def _one_order(judge: Any, items: list[PairItem], swap_labels: bool) -> list[Judgment]:
    """Verdicts in the order given (raw: 2.0 = the answer shown second), with the judge's details if it keeps them."""
    fn = getattr(judge, "single_order", None)
    if fn is None:
        return last_judgments(judge, [float(v) for v in judge.preferences(items)])
    values = fn(items, swap_labels=True) if swap_labels else fn(items)
    return last_judgments(judge, [float(v) for v in values])


def _share(values: list[list[float]]) -> dict[str, Any]:
    """Mean of per-pair shares (each the mean of that pair's valid verdicts) with a bootstrap CI over pairs."""
    per_pair = [sum(v) / len(v) for v in values if v]
    ci = bootstrap_mean_ci(per_pair)
    return {"share": sum(per_pair) / len(per_pair) if per_pair else None, "ci95": ci, "n_pairs": len(per_pair)}


def judgment_checks(judgments: list[Judgment], ids: list[str], threshold: float | None) -> dict[str, Any]:
    """Answer-token mass, unparsable and truncated judgments of a card section (ids: the pair of each judgment)."""
    masses = sorted(j.answer_mass for j in judgments if j.answer_mass is not None)
    return {
        "n_judgments": len(judgments),
        "min_answer_mass": threshold,
        "answer_mass_mean": sum(masses) / len(masses) if masses else None,
        "answer_mass_median": masses[len(masses) // 2] if masses else None,
        "n_unparsable": sum(j.unparsable for j in judgments),
        "n_truncated": sum(j.truncated for j in judgments),
        "truncated_ids": sorted({i for i, j in zip(ids, judgments, strict=True) if j.truncated}),
    }


def measure_pairwise(judge: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    items = _items(rows)
    n = len(items)
    both = items + [swapped(it) for it in items]
    labellings = (False, True) if getattr(judge, "label_swap", False) else (False,)
    start = time.perf_counter()
    runs = {sl: _one_order(judge, both, sl) for sl in labellings}  # swap_labels -> 2n raw verdicts
    seconds = time.perf_counter() - start
    # Every verdict mapped to the original order (2.0 = output_2 better), per pair over all conditions.
    orig = [[r[i].value for r in runs.values()] + [3.0 - r[n + i].value for r in runs.values()] for i in range(n)]
    prefs = [math.nan if any(math.isnan(v) for v in o) else sum(o) / len(o) for o in orig]
    first, second = [runs[False][i].value for i in range(n)], [3.0 - runs[False][n + i].value for i in range(n)]
    strict = [i for i, r in enumerate(rows) if r["label"] != 1.5 and not math.isnan(prefs[i])]
    ties = [i for i, r in enumerate(rows) if r["label"] == 1.5 and not math.isnan(prefs[i])]
    out: dict[str, Any] = _rate_block([_agreement(prefs[i], rows[i]["label"]) for i in strict])
    out["by_kind"] = {
        kind: _rate_block([_agreement(prefs[i], rows[i]["label"]) for i in strict if rows[i]["kind"] == kind])
        for kind in sorted({r["kind"] for r in rows if r["label"] != 1.5})  # n=0 shows
    }

    def verdict(j: Judgment) -> float:  # biases read the choice among the allowed tokens, parsed or not
        return j.renormalised if j.renormalised is not None else j.value

    def valid(i: int, fn) -> list[float]:  # fn(raw verdict, labels swapped) over pair i's verdicts
        return [fn(verdict(r[k]), sl) for sl, r in runs.items() for k in (i, n + i) if not math.isnan(verdict(r[k]))]

    # Position: picks the answer shown first (0.5 = none), whatever its label. Label: picks the label named first in
    # the prompt (`m`), whatever the slot; the labels sit on the other slots when swapped, so the two separate. Both
    # are read from every verdict renormalised over the two labels, the unparsable ones too (they are never scored):
    # a judge whose answers are mostly no label at all still shows which label it leans to.
    position = _share([valid(i, lambda v, sl: 2.0 - v) for i in range(n)])
    out["position_first_share"], out["position_first_ci95"] = position["share"], position["ci95"]
    if len(labellings) == 2:
        label = _share([valid(i, lambda v, sl: (v - 1.0) if sl else (2.0 - v)) for i in range(n)])
        out["label_first_share"], out["label_first_ci95"] = label["share"], label["ci95"]
        out["labels"] = list(getattr(judge, "settings", {}).get("labels") or ["first label", "second label"])
    else:
        out["label_first_share"] = out["label_first_ci95"] = None
        out["labels"] = None  # the judge cannot swap its labels: position and label bias stay confounded
    consistent = [float((first[i] > 1.5) == (second[i] > 1.5)) for i in strict if not math.isnan(first[i] + second[i])]
    out["order_consistency"] = sum(consistent) / len(consistent) if consistent else None
    out["length_bias"] = _length_bias(rows, prefs, strict, ties)
    out["ties"] = {
        "n": len(ties),
        "within_band": sum(abs(prefs[i] - 1.5) <= TIE_BAND for i in ties) / len(ties) if ties else None,
        "mean_abs_from_tie": sum(abs(prefs[i] - 1.5) for i in ties) / len(ties) if ties else None,
        "band": TIE_BAND,
    }
    judgments = [j for r in runs.values() for j in r]
    ids = [rows[i % n]["id"] for _ in runs for i in range(2 * n)]
    out["checks"] = judgment_checks(judgments, ids, getattr(judge, "min_answer_mass", None))
    out["n_failed"] = sum(math.isnan(p) for p in prefs)
    out["seconds_per_1k"] = 1000 * seconds / max(len(judgments), 1)
    out["n_judgments"] = len(judgments)
    return out


def _length_bias(rows: list[dict[str, Any]], prefs: list[float], strict: list[int], ties: list[int]) -> dict[str, Any]:
    """Share of verdicts for the longer answer, against the share where the longer answer is the better one."""

    def longer_is_2(i: int) -> bool:
        return len(rows[i]["output_2"]) > len(rows[i]["output_1"])

    diff = [i for i in strict if len(rows[i]["output_1"]) != len(rows[i]["output_2"])]
    picks_longer = [(prefs[i] - 1.0) if longer_is_2(i) else (2.0 - prefs[i]) for i in diff]
    truth_longer = [float((rows[i]["label"] > 1.5) == longer_is_2(i)) for i in diff]
    tie_longer = [(prefs[i] - 1.0) if longer_is_2(i) else (2.0 - prefs[i]) for i in ties]
    return {
        "n": len(diff),
        "prefers_longer": sum(picks_longer) / len(diff) if diff else None,
        "labelled_longer_better": sum(truth_longer) / len(diff) if diff else None,
        "ties_prefers_longer": sum(tie_longer) / len(tie_longer) if tie_longer else None,
    }


def measure_rating(judge: Any, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Rate each answer alone (MT-Bench single-v1); agreement = the better answer gets the higher rating."""
    if not hasattr(judge, "rate"):
        return None
    single = _single_prompt()  # read from the wheel once, not per answer
    prompts = [_single_messages(single, r["instruction"], r[k]) for r in rows for k in ("output_1", "output_2")]
    start = time.perf_counter()
    try:
        ratings = judge.rate(prompts, scale=(1, 10))
    except NotImplementedError as e:
        return {"status": "not supported", "reason": str(e)}
    seconds = time.perf_counter() - start
    details = last_judgments(judge, [float(v) for v in ratings])
    r1, r2 = ratings[0::2], ratings[1::2]
    ok = [i for i in range(len(rows)) if not math.isnan(r1[i] + r2[i])]
    strict = [i for i in ok if rows[i]["label"] != 1.5]

    def agree(i: int) -> float:
        if r1[i] == r2[i]:
            return 0.5
        return float((r2[i] > r1[i]) == (rows[i]["label"] > 1.5))

    out = _rate_block([agree(i) for i in strict])
    out["by_kind"] = {
        kind: _rate_block([agree(i) for i in strict if rows[i]["kind"] == kind])
        for kind in sorted({r["kind"] for r in rows if r["label"] != 1.5})  # n=0 shows
    }
    ties = [i for i in ok if rows[i]["label"] == 1.5]
    out["ties_mean_abs_diff"] = sum(abs(r1[i] - r2[i]) for i in ties) / len(ties) if ties else None
    good = [r2[i] if rows[i]["label"] > 1.5 else r1[i] for i in strict]
    bad = [r1[i] if rows[i]["label"] > 1.5 else r2[i] for i in strict]
    out["mean_rating_better"] = sum(good) / len(good) if good else None
    out["mean_rating_worse"] = sum(bad) / len(bad) if bad else None
    out["n_failed"] = len(rows) - len(ok)
    ids = [r["id"] for r in rows for _ in (1, 2)]
    out["checks"] = judgment_checks(details, ids, getattr(judge, "min_answer_mass", None))
    out["seconds_per_1k"] = 1000 * seconds / max(len(prompts), 1)
    return out


def build_card(
    name: str, spec: JudgeSpec | dict[str, Any], rows: list[dict[str, Any]], judge: Any = None
) -> dict[str, Any]:
    """The card of a judge (`spec` typed by the CLI; a test's stand-in judge may come with any dict)."""
    judge = judge or make_judge(spec)
    spec = spec.to_dict() if isinstance(spec, JudgeSpec) else spec
    if spec.get("backend") == "oracle":  # it can only compare answers to verifiable tasks
        rows = [r for r in rows if "record" in r]
    card: dict[str, Any] = {
        "name": name,
        "judge_id": judge.id,
        "prompt_hash": judge.prompt_hash,
        "heuristic": bool(judge.heuristic),
        "spec": spec,
        "labelled_set": {"version": VERSION, "n": len(rows), "kinds": sorted({r["kind"] for r in rows})},
        "pairwise": measure_pairwise(judge, rows),
        "rating": measure_rating(judge, rows),
    }
    stats = getattr(judge, "stats", None)
    if stats is not None:  # OpenAI-compatible judges: measured token usage and cost
        n = card["pairwise"]["n_judgments"] + len(rows) * 2
        card["usage"] = stats
        card["dollars_per_1k"] = 1000 * stats.get("dollars", 0.0) / max(n, 1)
    else:
        card["dollars_per_1k"] = 0.0
    return card


def _fmt(x: Any, pct: bool = False, digits: int = 1) -> str:
    if x is None:
        return "–"
    return f"{100 * x:.{digits}f} %" if pct else f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "– (no pair with every verdict parsed)" if x is None else f"{x:.1f} %"


def _ci(c: list[float] | None, pct: bool = False) -> str:
    return "–" if not c else f"{_fmt(c[0], pct)}–{_fmt(c[1], pct)}"


def _checks_lines(ck: dict[str, Any] | None, what: str) -> list[str]:
    """The answer-token mass, unparsable and truncated lines of a card section."""
    if not ck:
        return []
    if ck["answer_mass_mean"] is None:
        mass = "answer-token mass: not measured (an API or rule judge: its text is parsed)"
    else:
        mass = (f"answer-token mass: mean {_fmt(ck['answer_mass_mean'], True)}, median "
                f"{_fmt(ck['answer_mass_median'], True)} of the next-token probability")  # fmt: skip
    thr = f" (answer mass < {ck['min_answer_mass']})" if ck["min_answer_mass"] is not None else ""
    cut = ", ".join(ck["truncated_ids"][:8]) + (" …" if len(ck["truncated_ids"]) > 8 else "")
    return [
        f"- {mass}",
        f"- unparsable{thr}: **{ck['n_unparsable']} of {ck['n_judgments']}** {what} (NaN: never scored)",
        f"- truncated to the judge's max length: {ck['n_truncated']} of {ck['n_judgments']}"
        + (f" (pairs {cut})" if cut else ""),
    ]


def render_markdown(card: dict[str, Any]) -> str:
    pw, rt = card["pairwise"], card["rating"]
    ci = pw["ci95"]
    lines = [
        f"# Judge card: {card['name']}",
        "",
        f"- judge id: `{card['judge_id']}`; prompt hash `{card['prompt_hash'][:16]}`",
        f"- labelled set {card['labelled_set']['version']}: {card['labelled_set']['n']} pairs "
        f"({', '.join(card['labelled_set']['kinds'])})"
        + (
            f", the first {card['labelled_set']['per_kind']} of each kind"
            if card["labelled_set"].get("per_kind")
            else ""
        ),
    ]
    if card["heuristic"]:
        lines.append("- **HEURISTIC judge (ci tier only): its numbers mean nothing.**")
    if pw.get("labels"):
        label = (f"- label-token bias: verdicts pick the label `{pw['labels'][0]}` (vs `{pw['labels'][1]}`) "
                 f"{_fmt(pw['label_first_share'], True)} of the time, whatever the slot (50 % = none; 95 % CI "
                 f"{_ci(pw['label_first_ci95'], True)})")  # fmt: skip
    else:
        label = "- label-token bias: not separable (this judge has no labels to swap: any is inside the position bias)"
    measured = (pw.get("checks") or {}).get("answer_mass_mean") is not None
    renorm = "; every verdict renormalised over the labels, unparsable ones included" if measured else ""
    lines += [
        "",
        "## Pairwise (both orders" + (", both labellings" if pw.get("labels") else "") + ", averaged)",
        "",
        f"- agreement with the known better answer: **{_pct(pw['agreement'])}** "
        f"(95 % CI {_ci(ci)}, n={pw['n']} pairs with every verdict parsed; {pw['n_failed']} without)",
        f"- position bias: verdicts pick the answer shown first {_fmt(pw['position_first_share'], True)} of the "
        f"time, whatever its label (50 % = none; 95 % CI {_ci(pw.get('position_first_ci95'), True)}{renorm}); "
        f"both orders agree on {_fmt(pw['order_consistency'], True)} of parsed pairs",
        label,
        *_checks_lines(pw.get("checks"), "single-order verdicts"),
        f"- length bias: prefers the longer answer {_fmt(pw['length_bias']['prefers_longer'], True)} "
        f"(the longer one is better in {_fmt(pw['length_bias']['labelled_longer_better'], True)}); "
        f"on ties {_fmt(pw['length_bias']['ties_prefers_longer'], True)}",
        f"- ties: {_fmt(pw['ties']['within_band'], True)} within 1.5 ± {pw['ties']['band']} (n={pw['ties']['n']})",
        f"- cost: {_fmt(pw['seconds_per_1k'], digits=0)} s and ${_fmt(card['dollars_per_1k'], digits=2)} per "
        "1,000 judgments",
        "",
        "| kind | n | agreement % | 95 % CI |",
        "|---|---|---|---|",
    ]
    for kind, b in pw["by_kind"].items():
        c = b["ci95"]
        lines.append(f"| {kind} | {b['n']} | {_fmt(b['agreement'])} | {_ci(c)} |")
    lines += ["", "## Single-answer rating (MT-Bench single-v1, 1–10)", ""]
    if rt is None or "status" in rt:
        lines.append(f"- not supported by this judge{': ' + rt['reason'] if rt else ''}")
    else:
        c = rt["ci95"]
        lines += [
            f"- agreement (better answer rated higher): **{_pct(rt['agreement'])}** (95 % CI {_ci(c)}, n={rt['n']})",
            f"- mean rating of the better / worse answer: {_fmt(rt['mean_rating_better'], digits=2)} / "
            f"{_fmt(rt['mean_rating_worse'], digits=2)}; pairs without two parsed ratings: {rt['n_failed']}",
            *_checks_lines(rt.get("checks"), "ratings"),
            f"- cost: {_fmt(rt['seconds_per_1k'], digits=0)} s per 1,000 ratings",
            "",
            "| kind | n | agreement % | 95 % CI |",
            "|---|---|---|---|",
        ]
        lines += [f"| {k} | {b['n']} | {_fmt(b['agreement'])} | {_ci(b['ci95'])} |" for k, b in rt["by_kind"].items()]
    return "\n".join(lines) + "\n"


def subset(rows: list[dict[str, Any]], per_kind: int | None) -> list[dict[str, Any]]:
    """The first `per_kind` pairs of every kind (all when None): a smaller card keeps every kind of pair."""
    if per_kind is None:
        return rows
    seen: dict[str, int] = {}
    out = []
    for r in rows:
        seen[r["kind"]] = seen.get(r["kind"], 0) + 1
        if seen[r["kind"]] <= per_kind:
            out.append(r)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description="Measure a judge configuration on the labelled set and write its card.")
    ap.add_argument("--name", required=True, help="the judge's name in the config (e.g. smollm2-local)")
    ap.add_argument("--judge-config", required=True, help="make_judge spec as JSON or a JSON/YAML path")
    ap.add_argument("--labelled-set", type=Path, default=SHIPPED)
    ap.add_argument("--per-kind", type=int, default=None, help="first N pairs of each kind only (the card says so)")
    ap.add_argument("--out-json", type=Path, required=True)
    ap.add_argument("--out-md", type=Path, required=True)
    ap.add_argument("--tier", default="unknown")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from alignrepro.evals.alpacaeval.winrate import load_judge_config

    spec = JudgeSpec.from_dict(load_judge_config(args.judge_config), "--judge-config")
    rows = subset(read_jsonl(args.labelled_set), args.per_kind)
    card = build_card(args.name, spec, rows)
    card["labelled_set"] |= {
        "path": str(args.labelled_set),
        "sha256": sha256_file(args.labelled_set),
        "per_kind": args.per_kind,
    }
    card["provenance"] = provenance(
        tier=args.tier, config=card["spec"], judge_id=card["judge_id"], prompt_hash=card["prompt_hash"],
        labelled_set_sha256=card["labelled_set"]["sha256"], rating_prompt_hash=_single_prompt().sha256,
    )  # fmt: skip
    atomic_write_json(args.out_json, card)
    atomic_write_text(args.out_md, render_markdown(card))
    log.info("card %s: pairwise agreement %s %%, rating agreement %s %%", args.name, card["pairwise"]["agreement"],
             (card["rating"] or {}).get("agreement"))  # fmt: skip
    return card


if __name__ == "__main__":
    main()
