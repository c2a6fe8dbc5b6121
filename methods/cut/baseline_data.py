"""Training sets for the paper's baselines (§3.2), built from the same selected triplets as CUT."""

from __future__ import annotations

import random

from alignrepro.data.records import Record
from alignrepro.methods.cut.examples import is_error_judgment
from alignrepro.methods.cut.templates import judge_prompt, plain_prompt

# Forward Prediction conditions the judgment on (x, y); the paper gives no template, so we use its AI-judge
# template (Fig. 9) without the Yes/No decision.
FP_TEMPLATE = (
    "Below is an instruction-response pair. Write a judgment to evaluate the quality of this response."
    "\n\n### Instruction:\n{instruction}\n\n### Response:\n{response}\n\n### Judgment:\n"
)
# ILF's refinement prompt is not given in the paper (cut.md §7.13); ours asks the base model to fix the response.
REFINE_TEMPLATE = (
    "Below is an instruction, a response to it, and a judgment of the response. Write an improved "
    "response that fixes the problems the judgment points out.\n\n### Instruction:\n{instruction}"
    "\n\n### Response:\n{response}\n\n### Judgment:\n{judgment}\n\n### Improved response:\n"
)


def select_triplets(
    records: list[Record], align_p_ratio: float | None, seed: int, keep_error_judgments: bool
) -> tuple[list[Record], dict[str, int]]:
    """The official code's selection: drop failed judgments, keep int(ratio × #negatives) random positives.
    Every method of a table trains on exactly this selection."""
    usable = [r for r in records if r.output is not None and r.judgment is not None]
    errors = [r for r in usable if is_error_judgment(r.judgment)]
    if not keep_error_judgments:
        usable = [r for r in usable if not is_error_judgment(r.judgment)]
    positives = [r for r in usable if r.is_positive]
    negatives = [r for r in usable if not r.is_positive]
    kept = positives
    if align_p_ratio is not None:
        kept = random.Random(seed).sample(positives, min(len(positives), int(align_p_ratio * len(negatives))))
    kept_ids = {r.id for r in kept}
    selected = [r for r in usable if not r.is_positive or r.id in kept_ids]
    stats = {
        "n_positive": len(positives),
        "n_negative": len(negatives),
        "n_positive_kept": len(kept),
        "n_error_judgments": len(errors),
        "n_selected": len(selected),
    }
    return selected, stats


def forward_prediction_rows(triplets: list[Record], refinements: dict[str, str] | None = None) -> list[dict[str, str]]:
    rows = [{"prompt": plain_prompt(r.prompt_text), "completion": r.output} for r in triplets]
    rows += [
        {"prompt": FP_TEMPLATE.format(instruction=r.prompt_text, response=r.output), "completion": r.judgment}
        for r in triplets
    ]
    return rows


def hindsight_rows(triplets: list[Record], refinements: dict[str, str] | None = None) -> list[dict[str, str]]:
    return [{"prompt": judge_prompt(r.prompt_text, r.judgment), "completion": r.output} for r in triplets]


def refine_prompt(r: Record) -> str:
    return REFINE_TEMPLATE.format(instruction=r.prompt_text, response=r.output, judgment=r.judgment)


def ilf_mle_rows(triplets: list[Record], refinements: dict[str, str]) -> list[dict[str, str]]:
    """MLE on the refinement ŷ for negatives; positives keep their (already good) response."""
    return [
        {"prompt": plain_prompt(r.prompt_text), "completion": r.output if r.is_positive else refinements[r.id]}
        for r in triplets
    ]


def ilf_dpo_rows(triplets: list[Record], refinements: dict[str, str]) -> list[dict[str, str]]:
    """DPO(x, chosen ŷ, rejected y) on negatives whose refinement differs from the response."""
    return [
        {"prompt": plain_prompt(r.prompt_text), "chosen": refinements[r.id], "rejected": r.output}
        for r in triplets
        if not r.is_positive and refinements[r.id].strip() != r.output.strip()
    ]
