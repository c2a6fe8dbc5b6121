"""Judge-free evaluation of one LD-Align / SPIN model, per item (so that arms compare paired, on the same items):

  1. held-out NLL: mean per-token negative log-likelihood of the real answers to held-out prompts (what SPIN drives
     up relative to the model's own answers);
  2. implicit-reward accuracy: on held-out pairs (real answer vs the start policy's own answer), the share where
     r(y) = log pi(y|x) - log pi_0(y|x) ranks the real answer higher (ties half; pi_0 = the start policy, the same
     reference for every model, so iterations compare on one scale);
  3. oracle accuracy: the model answers held-out verifiable tasks; a program checks the answer.

`python -m alignrepro.methods.ld_align.evaluate --help`
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path
from typing import Any

import torch

from alignrepro.data.records import load_records, save_records
from alignrepro.data.verifiable import is_correct
from alignrepro.errors import UserError
from alignrepro.io import atomic_write_json
from alignrepro.models import choose_dtype, load_model, load_tokenizer, model_identity
from alignrepro.provenance import provenance

log = logging.getLogger("ld_align.evaluate")


def chat_pieces(tok, prompt: str, answer: str) -> tuple[list[int], list[int]]:
    """Token ids of the chat-formatted prompt and of the answer turn after it (as TRL tokenizes them)."""
    user = [{"role": "user", "content": prompt}]
    head = tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template([*user, {"role": "assistant", "content": answer}], tokenize=False)
    tail = full[len(head) :] if full.startswith(head) else answer + (tok.eos_token or "")
    return tok(head, add_special_tokens=False)["input_ids"], tok(tail, add_special_tokens=False)["input_ids"]


@torch.inference_mode()
def answer_logps(model, tok, prompts: list[str], answers: list[str], batch_size: int = 8) -> list[tuple[float, int]]:
    """(sum of the answer tokens' log-probabilities, number of answer tokens) per (prompt, answer)."""
    pieces = [chat_pieces(tok, p, a) for p, a in zip(prompts, answers, strict=True)]
    out: list[tuple[float, int]] = []
    pad = tok.pad_token_id
    for start in range(0, len(pieces), batch_size):
        chunk = pieces[start : start + batch_size]
        width = max(len(h) + len(t) for h, t in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        target = torch.zeros_like(ids, dtype=torch.bool)
        for i, (h, t) in enumerate(chunk):  # right padding: positions stay those of training
            ids[i, : len(h) + len(t)] = torch.tensor(h + t)
            mask[i, : len(h) + len(t)] = 1
            target[i, len(h) : len(h) + len(t)] = True
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        logp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        sel = target[:, 1:]
        for i in range(len(chunk)):
            out.append((float(logp[i][sel[i]].sum()), int(sel[i].sum())))
    return out


def implicit_reward_correct(policy: list[float], ref: list[float]) -> float:
    """1 if r(real) > r(generated), 0.5 on a tie (the start policy itself: r = 0), else 0; r = policy - ref."""
    r_real, r_gen = policy[0] - ref[0], policy[1] - ref[1]
    if math.isclose(r_real, r_gen, abs_tol=1e-6):
        return 0.5
    return float(r_real > r_gen)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m alignrepro.methods.ld_align.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", type=Path, required=True, help="the model folder evaluated")
    p.add_argument("--start", type=Path, required=True, help="the start policy pi_0 (implicit reward's reference)")
    p.add_argument("--heldout", type=Path, required=True, help="heldout.jsonl (real answers in 'reference')")
    p.add_argument("--heldout-generated", type=Path, required=True, help="pi_0's answers to the held-out prompts")
    p.add_argument("--verifiable", type=Path, required=True, help="verifiable_test.jsonl (gold in 'reference')")
    p.add_argument("--spec-json", required=True, help='{"max_new_tokens", "batch_size", "dtype", "generation": {...}}')
    p.add_argument("--tier", default="unknown")
    p.add_argument("--out", type=Path, required=True, help="JSON: per-item values and their means")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    spec = json.loads(args.spec_json)
    heldout = load_records(args.heldout)
    gen = {r.id: (r.output or "").strip() for r in load_records(args.heldout_generated)}
    missing = [r.id for r in heldout if r.id not in gen]
    if missing:
        raise UserError(f"{args.heldout_generated}: no answer for held-out prompts {missing[:3]}")
    dtype = choose_dtype(spec.get("dtype", "float32"))
    tok = load_tokenizer(args.model, padding_side="right")
    bs = spec["batch_size"]
    prompts = [r.instruction for r in heldout]
    real = [r.reference for r in heldout]
    gens = [gen[r.id] for r in heldout]

    def logps(model_dir: Path) -> tuple[list, list]:
        model = load_model(model_dir, dtype=dtype).eval()
        return answer_logps(model, tok, prompts, real, bs), answer_logps(model, tok, prompts, gens, bs)

    pol_real, pol_gen = logps(args.model)
    ref_real, ref_gen = (pol_real, pol_gen) if args.model.resolve() == args.start.resolve() else logps(args.start)
    nll = {r.id: -s / max(n, 1) for r, (s, n) in zip(heldout, pol_real, strict=True)}
    reward = {
        r.id: implicit_reward_correct([a[0], b[0]], [c[0], d[0]])
        for r, a, b, c, d in zip(heldout, pol_real, pol_gen, ref_real, ref_gen, strict=True)
    }
    from alignrepro.generation import format_prompt, make_backend, parse_spec

    tasks = load_records(args.verifiable)
    gen = {**spec["generation"], "dtype": spec.get("dtype", "float32")}
    backend = make_backend(parse_spec(gen, args.model, "ld_align.generation"), args.model)  # typed once
    texts = backend.generate([format_prompt("chat", t, backend.tokenizer) for t in tasks], spec["max_new_tokens"])
    oracle = {t.id: float(is_correct(t, text)) for t, text in zip(tasks, texts, strict=True)}
    for t, text in zip(tasks, texts, strict=True):
        t.output = text
    save_records(args.out.with_suffix(".answers.jsonl"), tasks)

    def mean(d: dict[str, float]) -> float | None:
        return sum(d.values()) / len(d) if d else None

    result: dict[str, Any] = {
        "model": model_identity(args.model),
        "start": model_identity(args.start),
        "per_item": {"heldout_nll": nll, "implicit_reward": reward, "oracle": oracle},
        "metrics": {"heldout_nll": mean(nll), "implicit_reward_acc": mean(reward), "oracle_acc": mean(oracle)},
        "n": {"heldout": len(nll), "verifiable": len(oracle)},
        "provenance": provenance(tier=args.tier, config=spec),
    }
    atomic_write_json(args.out, result)
    log.info("%s: %s", args.model, result["metrics"])


if __name__ == "__main__":
    main()
