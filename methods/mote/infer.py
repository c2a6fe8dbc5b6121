"""Generation for MoTE-paper models (every arch train.py writes): adaptive step decoding and the fixed-length modes.

  adaptive      the model writes its own chain: it emits a step start token, the matching expert decodes (routing
                follows the step of each fed token, updated when a start token is emitted), until the answer step
                ends (<|/response|>), EOS, or the token budget (paper §3.2, "inference with adaptive length")
  q_a           <|response|> is prefilled: the answer expert answers at once                       (Fig. 6 modes)
  q_ana_a       analysis is forced, then <|response|> is forced after <|/analysis|>
  q_ana_guid_a  analysis → guidance → answer, each next start token forced after the previous end token
In every mode, inside a step only that step's end token is allowed among the step tokens (the step grammar: no
nested or repeated start tokens); in the fixed modes EOS only in the answer. `--step-max-tokens N` (any mode)
forces a reasoning step's end token after N tokens. Forced tokens count towards the budget (n_tokens = every chain
token). Query tokens route to E_analysis (note §7.3, MoTEConfig.query_expert_infer). Plain LoRA models (lora,
lora_x2) and the gated MoEs use the same loop; routing is then a no-op. Greedy by default; a custom loop with
KV cache, batched with left padding.

Output JSONL rows: the input row plus {"output": the answer text, "steps": {step: text}, "n_tokens", "fallbacks",
"mode", "raw"}; a summary json beside it (fallback counts, tokens/s, provenance).

`python -m alignrepro.methods.mote.infer --help`
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from alignrepro.generation import length_batches
from alignrepro.io import atomic_write_json, read_jsonl, write_jsonl
from alignrepro.methods.mote.moe_lora import load_mote, routing
from alignrepro.methods.mote.steps import (
    STEP_IDS,
    STEPS,
    add_step_tokens,
    encode_prompt,
    load_step_token_state,
    parse_generated,
    step_token_ids,
)
from alignrepro.models import choose_dtype, load_model, model_identity, read_model_meta
from alignrepro.provenance import provenance

log = logging.getLogger("mote.infer")
MODES = {
    "adaptive": None,
    "q_a": ("answer",),
    "q_ana_a": ("analysis", "answer"),
    "q_ana_guid_a": ("analysis", "guidance", "answer"),
}


def load_trained(model_dir: str | Path, dtype: torch.dtype | None = None):
    """(model, tokenizer, model.json) of a train.py folder, ready to decode (eval mode, left padding)."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    meta = read_model_meta(model_dir)  # verified against its file manifest
    if meta.get("kind") != "mote":
        raise ValueError(f"{model_dir}: model.json kind {meta.get('kind')!r}, expected 'mote' (a train.py folder)")
    tok = AutoTokenizer.from_pretrained(str(model_dir / meta["tokenizer"]))
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = load_model(meta["base"], dtype=dtype or choose_dtype(meta["config"].get("dtype", "float32")))
    add_step_tokens(tok, model, seed=meta["config"]["train"]["seed"])
    adapter = model_dir / meta["adapter"]
    if meta["adapter_format"] == "mote":
        load_mote(model, adapter)
    else:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        load_step_token_state(model, load_file(str(adapter / "step_tokens.safetensors")))
    model.config.use_cache = True
    return model.eval(), tok, meta


def _conversation(row: dict[str, Any]) -> list[dict[str, str]]:
    if row.get("messages"):
        return row["messages"]
    text = row.get("prompt") or row.get("instruction")
    if not text:
        raise ValueError(f"prompt row {row.get('id')!r} has no messages/prompt/instruction")
    return [{"role": "user", "content": text}]


class StepDecoder:
    """Batched greedy (or seeded sampling) step decoding with a KV cache."""

    def __init__(self, model, tokenizer, temperature: float = 0.0, seed: int = 0):
        self.model, self.tok = model, tokenizer
        self.temperature, self.seed = temperature, seed
        self.ids = step_token_ids(tokenizer)
        self.start_of = {s: a for s, (a, _) in self.ids.items()}
        self.end_of = {s: b for s, (_, b) in self.ids.items()}
        self.step_of_token = {i: s for s, pair in self.ids.items() for i in pair}
        self.all_step_ids = sorted(self.step_of_token)
        self.eos = tokenizer.eos_token_id
        # Never emit BOS/UNK-like specials (as alignrepro.generation.HFBackend); EOS and step tokens stay allowed.
        self.suppress = sorted({i for i in tokenizer.all_special_ids if i != self.eos} - set(self.all_step_ids))
        self.device = next(model.parameters()).device

    def _choose(self, logits: torch.Tensor, rows: list[dict[str, Any]], plan: tuple[str, ...] | None, gen) -> list[int]:
        logits = logits.float().clone()
        if self.suppress:
            logits[:, self.suppress] = -float("inf")
        forced: dict[int, int] = {}
        for b, r in enumerate(rows):
            if r["done"]:
                continue
            cur = r["step"]
            if r["open"] and r["step_max"] is not None and cur != "answer" and r["in_step"] >= r["step_max"]:
                forced[b] = self.end_of[cur]  # a reasoning step's own budget is spent (both kinds of mode)
            if r["open"]:  # inside step `cur` (every mode): only its end token among the step tokens
                banned = [i for i in self.all_step_ids if i != self.end_of[cur]]
                if plan is not None and cur != "answer" and self.eos is not None:
                    banned.append(self.eos)
                logits[b, banned] = -float("inf")
            elif plan is not None:  # between steps: the plan's next start token
                forced[b] = self.start_of[plan[r["plan_i"]]]
        if self.temperature > 0:
            probs = torch.softmax(logits / self.temperature, dim=-1)
            picked = torch.multinomial(probs.cpu(), 1, generator=gen).squeeze(-1).tolist()
        else:
            picked = logits.argmax(-1).tolist()
        for b, t in forced.items():
            picked[b] = t
        return picked

    def _update(self, r: dict[str, Any], token: int, plan: tuple[str, ...] | None, budget: int) -> int:
        """Record a token; return the step id it is fed with."""
        r["gen"].append(token)
        step = self.step_of_token.get(token)
        if step is not None and token == self.start_of[step]:
            if plan is not None:
                r["plan_i"] = plan.index(step) if step in plan else r["plan_i"]
            r["step"], r["open"], r["in_step"] = step, True, 0
            sid = STEP_IDS[step]
        elif step is not None:  # an end token: belongs to its step
            sid = STEP_IDS[step]
            r["open"] = False
            if plan is not None and step in plan:
                r["plan_i"] = plan.index(step) + 1
            if step == "answer":
                r["done"] = True
        else:
            sid = STEP_IDS[r["step"]] if r["step"] else STEP_IDS["query"]
            r["in_step"] += 1
            if token == self.eos:
                r["done"] = True
                r["gen"].pop()  # EOS is no chain token
            elif r["step"] == "answer" or not r["open"]:  # answer text (or text outside every step)
                r["n_answer"] += 1
        if not r["done"] and (
            len(r["gen"]) >= budget or (r["answer_max"] is not None and r["n_answer"] >= r["answer_max"])
        ):
            r["done"], r["budget_hit"] = True, True
        return sid

    @torch.inference_mode()
    def generate(
        self,
        conversations: list[list[dict[str, str]]],
        mode: str = "adaptive",
        max_new_tokens: int = 256,
        step_max_tokens: int | None = None,
        answer_max_tokens: int | None = None,
    ) -> list[dict[str, Any]]:
        """max_new_tokens: every chain token (forced ones included); answer_max_tokens: the answer's own tokens (text
        outside any step counts as answer), e.g. the answer budget every other model of a benchmark gets."""
        plan = MODES[mode]
        gen = torch.Generator().manual_seed(self.seed)
        prompts = [encode_prompt(self.tok, c) for c in conversations]
        rows = [
            {
                "step": None,
                "open": False,
                "plan_i": 0,
                "in_step": 0,
                "gen": [],
                "done": False,
                "budget_hit": False,
                "step_max": step_max_tokens,
                "answer_max": answer_max_tokens,
                "n_answer": 0,
            }
            for _ in prompts
        ]
        # Fixed modes: prefill the first start token (a forced chain token; it counts towards the budget).
        feeds = []
        for p, r in zip(prompts, rows, strict=True):
            ids, steps = list(p), [STEP_IDS["query"]] * len(p)
            if plan is not None:
                first = self.start_of[plan[0]]
                steps.append(self._update(r, first, plan, max_new_tokens))
                ids.append(first)
            feeds.append((ids, steps))
        t = max(len(i) for i, _ in feeds)
        pad = self.tok.pad_token_id
        ids = torch.tensor([[pad] * (t - len(i)) + i for i, _ in feeds], device=self.device)
        step_ids = torch.tensor([[0] * (t - len(s)) + s for _, s in feeds], device=self.device)
        mask = torch.tensor([[0] * (t - len(i)) + [1] * len(i) for i, _ in feeds], device=self.device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = None
        while True:
            with routing(self.model, step_ids):
                out = self.model(
                    input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True
                )
            cache = out.past_key_values
            if all(r["done"] for r in rows):
                break
            picked = self._choose(out.logits[:, -1], rows, plan, gen)
            new_steps = []
            for r, token in zip(rows, picked, strict=True):
                if r["done"]:
                    token, sid = pad, STEP_IDS["query"]
                else:
                    sid = self._update(r, token, plan, max_new_tokens)
                new_steps.append((token, sid))
            if all(r["done"] for r in rows):
                break
            ids = torch.tensor([[tk] for tk, _ in new_steps], device=self.device)
            step_ids = torch.tensor([[s] for _, s in new_steps], device=self.device)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            pos = pos[:, -1:] + 1
        results = []
        for r in rows:
            steps, fallbacks = parse_generated(r["gen"], self.tok)
            if r["budget_hit"]:
                fallbacks.append("budget_exhausted")
            results.append(
                {
                    "output": steps.get("answer", ""),
                    "steps": steps,
                    "n_tokens": len(r["gen"]),
                    "fallbacks": fallbacks,
                    "raw": self.tok.decode(r["gen"], skip_special_tokens=False),
                    "token_ids": list(r["gen"]),
                }
            )
        return results

    def generate_batched(
        self,
        conversations: list[list[dict[str, str]]],
        mode: str = "adaptive",
        max_new_tokens: int = 256,
        step_max_tokens: int | None = None,
        answer_max_tokens: int | None = None,
        batch_size: int = 8,
        max_batch_tokens: int | None = None,
    ) -> list[dict[str, Any]]:
        """`generate` over batches of similar prompt length (less left padding), with a progress bar; input order."""
        lengths = [len(encode_prompt(self.tok, c)) for c in conversations]
        results: dict[int, dict[str, Any]] = {}
        bar = tqdm(total=len(conversations), desc=f"mote {mode}", unit="prompt")
        for idx in length_batches(lengths, batch_size, max_batch_tokens):
            batch = [conversations[i] for i in idx]
            outs = self.generate(batch, mode, max_new_tokens, step_max_tokens, answer_max_tokens)
            results.update(zip(idx, outs, strict=True))
            bar.update(len(idx))
        bar.close()
        return [results[i] for i in range(len(conversations))]


def count_chain_shapes(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How many decoded rows had each chain shape, e.g. {"analysis+answer": 15, "answer": 1}."""
    return dict(Counter("+".join(s for s in STEPS if s in r["steps"]) for r in rows))


def run(
    model_dir: Path,
    prompts_path: Path,
    mode: str,
    max_new_tokens: int,
    out: Path,
    batch_size: int = 8,
    temperature: float = 0.0,
    seed: int = 0,
    step_max_tokens: int | None = None,
    tier: str = "unknown",
    dtype: str = "float32",
    max_batch_tokens: int | None = None,
) -> dict[str, Any]:
    model, tok, meta = load_trained(model_dir, choose_dtype(dtype))
    rows = read_jsonl(prompts_path)
    decoder = StepDecoder(model, tok, temperature, seed)
    start = time.perf_counter()
    outs = decoder.generate_batched(
        [_conversation(r) for r in rows], mode, max_new_tokens, step_max_tokens, None, batch_size, max_batch_tokens
    )
    seconds = time.perf_counter() - start
    for o in outs:
        o.pop("token_ids")
    out_rows = [{**r, **o, "mode": mode} for r, o in zip(rows, outs, strict=True)]
    write_jsonl(out, out_rows)
    fallback_counts = Counter(f for r in out_rows for f in r["fallbacks"])
    if fallback_counts:
        log.warning("parse fallbacks over %d rows: %s", len(out_rows), dict(fallback_counts))
    n_tokens = sum(r["n_tokens"] for r in out_rows)
    settings = {
        "mode": mode,
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "seed": seed,
        "step_max_tokens": step_max_tokens,
        "batch_size": batch_size,
        "max_batch_tokens": max_batch_tokens,
    }
    summary = {
        **settings,
        "model": str(model_dir),
        "arch": meta.get("arch"),
        "n_rows": len(out_rows),
        "fallback_counts": dict(fallback_counts),
        "rows_with_fallback": sum(bool(r["fallbacks"]) for r in out_rows),
        "steps_present": dict(Counter(s for r in out_rows for s in r["steps"] if r["steps"][s])),
        "chain_shapes": count_chain_shapes(out_rows),
        "n_tokens": n_tokens,
        "mean_tokens": round(n_tokens / max(len(out_rows), 1), 2),
        "seconds": round(seconds, 2),
        "tokens_per_s": round(n_tokens / max(seconds, 1e-9), 2),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "provenance": provenance(
            tier=tier,
            config=settings,
            seed=seed,
            model_identity=model_identity(meta["base"]),
            adapter_sha256=meta.get("adapter_sha256"),
            prompts=str(prompts_path),
        ),
    }
    atomic_write_json(summary_path(out), summary)
    log.info("%d rows, %d tokens in %.1fs (%.1f tokens/s)", len(out_rows), n_tokens, seconds, summary["tokens_per_s"])
    return summary


def summary_path(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".jsonl") + ".summary.json")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m alignrepro.methods.mote.infer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", type=Path, required=True, help="a train.py model folder (model.json kind 'mote')")
    p.add_argument("--prompts", type=Path, required=True, help="JSONL rows with messages (or prompt/instruction)")
    p.add_argument("--mode", choices=list(MODES), default="adaptive")
    p.add_argument("--max-new-tokens", type=int, default=256, help="budget of chain tokens (forced ones included)")
    p.add_argument(
        "--step-max-tokens", type=int, help="force a reasoning step's end token after this many tokens (any mode)"
    )
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument(
        "--max-batch-tokens", type=int, help="cap rows x longest prompt per batch (less left padding); default: none"
    )
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float32", help="float32 | bfloat16 (auto: bf16 where the CPU runs it natively)")
    p.add_argument("--tier", default="unknown")
    p.add_argument("--out", type=Path, required=True, help="generations JSONL (+ <name>.summary.json beside it)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    summary = run(
        args.model,
        args.prompts,
        args.mode,
        args.max_new_tokens,
        args.out,
        args.batch_size,
        args.temperature,
        args.seed,
        args.step_max_tokens,
        args.tier,
        args.dtype,
        args.max_batch_tokens,
    )
    print(json.dumps({k: summary[k] for k in ("n_rows", "fallback_counts", "tokens_per_s")}, indent=2))


if __name__ == "__main__":
    main()
