"""The data steps of CUT's online loop, one CLI verb each (each is one Snakemake rule):

  pool     instruction pools per iteration + the held-out evaluation set
  judge    judgments for a model's responses: oracle critic on verifiable tasks, a pluggable critic on open ones
  refine   ILF refinement prompts for the negatives (the base model writes ŷ via the generation CLI)
  reference the evaluation reference outputs (full tier: the AlpacaEval file's reference model outputs)

`python -m alignrepro.methods.cut.data_steps --help`
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from alignrepro.data.records import Record, load_records, save_records
from alignrepro.generation_spec import GenerationSpec
from alignrepro.io import atomic_write_json, sha256_text, stable_hash
from alignrepro.methods.cut.baseline_data import refine_prompt
from alignrepro.provenance import provenance

log = logging.getLogger("cut.data")
# The paper's GPT-4 judgment prompt (v4 Fig. 8).
CRITIC_SYSTEM = (
    "Below is an instruction that describes a task and a potential response. Evaluate the response and "
    "provide valuable judgments to the response. If the response is perfect, please only reply with "
    "'perfect'. Otherwise, please indicate precisely what mistakes it has."
)
CRITIC_USER = "### Instruction: {instruction}\n\n### Response: {response}"


def build_pool(data: dict[str, Any], seed: int, out_dir: Path) -> None:
    """Disjoint instruction pools for each online iteration and a held-out evaluation set."""
    n_iter = data["iterations"]
    if data["source"] == "generated":
        from alignrepro.data.shipped import load_open_instructions
        from alignrepro.data.verifiable import generate_tasks

        per, ev = data["per_iteration"], data["eval"]
        verifiable = generate_tasks(per["verifiable"] * n_iter + ev["verifiable"], seed=seed, id_prefix="cut")
        open_train = load_open_instructions("train")
        open_test = load_open_instructions("test")[: ev["open"]]
        if per["open"] * n_iter > len(open_train):
            raise ValueError(
                f"config cut.data.per_iteration.open: {per['open']} × {n_iter} iterations needs more than "
                f"the {len(open_train)} shipped open training instructions"
            )
        for k in range(n_iter):
            pool = verifiable[k * per["verifiable"] : (k + 1) * per["verifiable"]]
            pool += open_train[k * per["open"] : (k + 1) * per["open"]]
            save_records(out_dir / f"pool_iter{k + 1}.jsonl", pool)
        save_records(out_dir / "eval_prompts.jsonl", verifiable[per["verifiable"] * n_iter :] + open_test)
    else:
        from alignrepro.data.hub import load_alpaca_eval_set
        from alignrepro.methods.cut.hub_pool import load_alpaca_instructions

        hub = data["hub"]
        pool = load_alpaca_instructions(
            hub["instructions"]["path"], seed=seed, n=data["per_iteration"]["open"] * n_iter
        )
        for k in range(n_iter):
            n = data["per_iteration"]["open"]
            save_records(out_dir / f"pool_iter{k + 1}.jsonl", pool[k * n : (k + 1) * n])
        ev = hub["alpaca_eval"]
        save_records(
            out_dir / "eval_prompts.jsonl", load_alpaca_eval_set(ev["path"], ev["data_file"], ev.get("revision"))
        )


def critic_for(spec: dict[str, Any], model_root: Path):
    """A critic writes a judgment (free text, generated; unlike a pairwise judge it compares nothing); verifiable
    tasks get the deterministic oracle, open ones a chat model behind a generation backend (`local` | `openai`)."""
    if spec["backend"] == "oracle":
        from alignrepro.data.verifiable import OracleCritic

        return OracleCritic()
    return LMCritic(spec, model_root)


class LMCritic:
    """The paper's judge prompt answered by a chat model: a local one (the paper's own 'AI judge' setting, §5.2.1)
    or an OpenAI-compatible endpoint (GPT-4 at the full tier)."""

    def __init__(self, spec: GenerationSpec | dict[str, Any], model_root: Path):
        from alignrepro.generation import make_backend

        self.spec = GenerationSpec.from_dict(spec, "critic")  # typed once: a critic is a generation spec
        model_ref = model_root / self.spec.model if self.spec.backend == "local" else None
        self.backend = make_backend(self.spec, model_ref)
        self.id = f"critic:{self.backend.id}"
        self.prompt_hash = sha256_text(CRITIC_SYSTEM + CRITIC_USER)

    def critique_many(self, records: list[Record]) -> list[str]:
        conversations = [
            [
                {"role": "system", "content": CRITIC_SYSTEM},
                {"role": "user", "content": CRITIC_USER.format(instruction=r.prompt_text, response=r.output)},
            ]
            for r in records
        ]
        n_tokens = self.spec.max_new_tokens or 64
        if hasattr(self.backend, "generate_chat"):  # an API: send the messages as they are
            return self.backend.generate_chat(conversations, n_tokens)
        tok = self.backend.tokenizer  # in-process: render with the critic model's own chat template
        prompts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
        return self.backend.generate(prompts, n_tokens)


def judge(responses: list[Record], critics: dict[str, Any]) -> list[Record]:
    groups: dict[str, list[Record]] = {"verifiable": [], "open": []}
    for r in responses:
        groups["open" if r.task == "open" else "verifiable"].append(r)
    for group, records in groups.items():
        if not records:
            continue
        critic = critics[group]
        texts = (
            critic.critique_many(records)
            if hasattr(critic, "critique_many")
            else [critic.critique(r, r.output) for r in records]
        )
        for r, text in zip(records, texts, strict=True):
            r.judgment = text.strip() or "$ERROR$"  # an empty judgment is a failed call, as in the official data
            r.meta = {**r.meta, "critic": critic.id, "critic_prompt_hash": getattr(critic, "prompt_hash", None)}
    log.info(
        "judged %d responses: %d positive, %d negative",
        len(responses),
        sum(r.is_positive for r in responses),
        sum(not r.is_positive for r in responses),
    )
    return responses


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m alignrepro.methods.cut.data_steps",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="verb", required=True)
    a = sub.add_parser("pool", help="build instruction pools and the evaluation set")
    a.add_argument("--data-json", required=True)
    a.add_argument("--seed", type=int, required=True)
    a.add_argument("--out-dir", type=Path, required=True)
    b = sub.add_parser("judge", help="judge responses (writes triplets)")
    b.add_argument("--responses", type=Path, required=True)
    b.add_argument(
        "--critic-json",
        required=True,
        help='{"verifiable": {...}, "open": {...}} critic specs (the workflow: the entries cut.critic names)',
    )
    b.add_argument("--model-root", type=Path, default=Path("results/models"))
    b.add_argument("--tier", required=True)
    b.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("refine", help="write ILF refinement prompts for the negatives")
    c.add_argument("--triplets", type=Path, required=True)
    c.add_argument("--out", type=Path, required=True)
    d = sub.add_parser("reference", help="reference outputs from the evaluation set's `reference` field")
    d.add_argument("--eval-prompts", type=Path, required=True)
    d.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    if args.verb == "pool":
        build_pool(json.loads(args.data_json), args.seed, args.out_dir)
    elif args.verb == "judge":
        specs = json.loads(args.critic_json)
        critics = {g: critic_for(s, args.model_root) for g, s in specs.items()}
        triplets = judge(load_records(args.responses), critics)
        save_records(args.out, triplets)
        atomic_write_json(
            args.out.with_suffix(".provenance.json"),
            provenance(
                tier=args.tier,
                config=specs,
                critics={g: c.id for g, c in critics.items()},
                critic_prompt_hashes={g: getattr(c, "prompt_hash", None) for g, c in critics.items()},
                data_sha256=stable_hash([r.to_dict() for r in triplets], 64),
                n_positive=sum(r.is_positive for r in triplets),
                n_negative=sum(not r.is_positive for r in triplets),
            ),
        )
    elif args.verb == "refine":
        negatives = [r for r in load_records(args.triplets) if not r.is_positive]
        save_records(
            args.out,
            [Record(id=r.id, instruction=refine_prompt(r), task=r.task, source="ilf-refine") for r in negatives],
        )
    else:
        refs = [
            Record(
                id=r.id,
                instruction=r.instruction,
                input=r.input,
                output=r.reference,
                task=r.task,
                reference=r.reference,
                meta=r.meta,
            )
            for r in load_records(args.eval_prompts)
        ]
        save_records(args.out, refs)


if __name__ == "__main__":
    main()
