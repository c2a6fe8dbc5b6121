"""Generation behind one backend interface: HF generate in-process (tiny/ci), an OpenAI-compatible endpoint
(vLLM server or an API) at the full tier. CLI: `python -m alignrepro.generation --help`."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tqdm.auto import tqdm

from alignrepro.data.records import Record, save_records
from alignrepro.errors import UserError
from alignrepro.generation_spec import BACKENDS, DEPRECATED_BACKENDS, GenerationSpec, backend_name
from alignrepro.io import atomic_write_json, read_jsonl, stable_hash
from alignrepro.lazy_torch import inference_mode
from alignrepro.model_kinds import kind_object
from alignrepro.provenance import provenance
from alignrepro.templates import alpaca_prompt, alpaca_turn

if TYPE_CHECKING:  # imported where used: the workflow's own process imports this module (alignrepro/lazy_torch.py)
    import torch

log = logging.getLogger(__name__)


__all__ = ["BACKENDS", "DEPRECATED_BACKENDS", "GenerationSpec", "backend_name", "make_backend", "parse_spec"]


def parse_spec(
    spec: GenerationSpec | dict[str, Any], model_dir: str | Path | None, where: str = "generation"
) -> GenerationSpec:
    """A step's generation spec, typed once at its entry: every key is the engine's, or one the model's own backend
    takes (a paper kind's `SPEC_KEYS`, e.g. MoTE's step_max_tokens; a kind listing none takes any)."""
    if isinstance(spec, GenerationSpec):
        return spec
    own: tuple[str, ...] | None = ()
    if backend_name(spec) == "local" and model_dir is not None:
        paper_backend = kind_object(model_dir, "backend")
        if paper_backend is not None:
            own = getattr(paper_backend, "SPEC_KEYS", None)
    return GenerationSpec.from_dict(spec, where, extra=own)


PROMPTS_EXPECTED = "expected JSONL: one JSON object per line, each with an 'id' and a string 'instruction'"


def load_prompts(path: str | Path) -> list[Record]:
    """The records to answer. A missing, empty or malformed file is a UserError naming it (and the record), raised
    before any model is loaded."""
    try:
        rows = read_jsonl(path)
    except FileNotFoundError as e:
        raise UserError(f"prompts file {path}: no such file; {PROMPTS_EXPECTED}") from e
    except UnicodeDecodeError as e:
        raise UserError(f"prompts file {path}: not UTF-8 text; {PROMPTS_EXPECTED}") from e
    except ValueError as e:  # read_jsonl names path:line
        raise UserError(f"prompts file {e}; {PROMPTS_EXPECTED}") from e
    if not rows:
        raise UserError(f"prompts file {path} holds no records; {PROMPTS_EXPECTED}")
    records = []
    for i, row in enumerate(rows, 1):  # blank lines are skipped: "record i" counts the others
        where = f"prompts file {path}: record {i}"
        if not isinstance(row, dict):
            raise UserError(f"{where} is a JSON {type(row).__name__}; {PROMPTS_EXPECTED}")
        try:
            rec = Record.from_dict(row, where=where)
        except (ValueError, TypeError) as e:
            raise UserError(f"{e}; {PROMPTS_EXPECTED}") from e
        if not isinstance(rec.instruction, str) or not isinstance(rec.input, str):
            raise UserError(f"{where}: field 'instruction' (and 'input') must be a string; {PROMPTS_EXPECTED}")
        records.append(rec)
    return records


def format_prompt(template: str, record: Record, tokenizer: Any = None) -> str:
    """Prompt formats shared by all models of a paper (one template per table, never one per model)."""
    if template == "alpaca":
        return alpaca_prompt(record.prompt_text)
    if template == "raw":  # the record's instruction is already the full prompt (e.g. ILF refinement prompts)
        return record.instruction
    if template == "chat":
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": record.prompt_text}], tokenize=False, add_generation_prompt=True
        )
    raise ValueError(f"unknown prompt template {template!r} (expected 'alpaca', 'chat' or 'raw')")


def format_conversation(template: str, messages: list[dict[str, str]], tokenizer: Any = None) -> str:
    """A multi-turn conversation (user/assistant messages, ending with a user turn) as one prompt string.

    "chat" uses the model's own chat template; "alpaca" chains Alpaca blocks, each earlier answer after its
    "### Response:" (how Alpaca-format models see a dialogue).
    """
    if not messages or messages[-1]["role"] != "user":
        raise ValueError("a conversation to answer must end with a user message")
    if template == "chat":
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if template == "hh":  # HH-RLHF's raw dialogue form, for base models without a chat template (GPT-2)
        names = {"user": "Human", "assistant": "Assistant"}
        return "".join(f"\n\n{names[m['role']]}: {m['content']}" for m in messages) + "\n\nAssistant:"
    if template == "alpaca":
        text = ""
        for m in messages:
            if m["role"] == "user":
                text += alpaca_prompt(m["content"]) if not text else alpaca_turn(m["content"])
            elif m["role"] == "assistant":
                text += " " + m["content"].strip() + "\n\n"
        return text
    raise ValueError(f"prompt template {template!r} has no multi-turn form (expected 'chat', 'hh' or 'alpaca')")


def resolve_template(template: str, model_dir: str | Path | None) -> str:
    """ "auto" = the format the model was trained in (model.json); endpoints take chat messages as they are."""
    if template != "auto":
        return template
    if model_dir is None:
        return "chat"
    from alignrepro.models import prompt_template

    return prompt_template(model_dir)


def backend_for(spec: GenerationSpec | dict[str, Any], model_dir: str | Path | None, template: str = "auto"):
    """(backend, prompt format, GenerationSpec used) to answer with: the format resolved for the model ("auto" = the
    one it was trained in) and, for HF models, that format's stop strings (make_backend's default follows
    spec.template). A dict is read as make_backend reads one."""
    spec = _typed(spec, model_dir)
    local = spec.backend == "local"
    if local and model_dir is None:
        raise SystemExit("--model is required for the local backend")
    template = resolve_template(template, model_dir)
    if local:
        spec = spec.with_(stop=spec.stop if spec.stop is not None else TEMPLATE_STOPS.get(template, []))
    return make_backend(spec, model_dir), template, spec


def _typed(spec: GenerationSpec | dict[str, Any], model_dir: str | Path | None) -> GenerationSpec:
    """A dict from a caller that did not parse it (LAB's steps, tests; a chain's whole settings): checked as at an
    entry, except that a key the engine does not know is left to the model's own backend, as before."""
    if isinstance(spec, GenerationSpec):
        return spec
    typed = GenerationSpec.from_dict(spec, "generation spec", extra=None)
    if typed.options and kind_object(model_dir, "backend") is None:
        log.debug("generation spec: keys no backend reads: %s", sorted(typed.options))
    return typed


def answer_conversations(
    backend: Any, conversations: list[list[dict[str, str]]], template: str, max_new_tokens: int
) -> list[str]:
    """Answers to conversations with any backend: OpenAI-compatible endpoints take the messages as they are."""
    if hasattr(backend, "generate_chat"):
        return backend.generate_chat(conversations, max_new_tokens)
    tokenizer = getattr(backend, "tokenizer", None)
    return backend.generate([format_conversation(template, c, tokenizer) for c in conversations], max_new_tokens)


# The official CUT generate.py splits outputs on the template's markers: a model continuing into a made-up
# "### Instruction:" is cut there, never scored on it.
TEMPLATE_STOPS = {
    "alpaca": ["\n### ", "### Instruction", "### Response"],
    "raw": ["\n### "],
    "chat": [],
    "hh": ["\n\nHuman:", "\nHuman:"],  # the official MORLAIF sampler stops at "Human:"
}


def cut_at_stop(text: str, stops: list[str]) -> str:
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:cut].strip()


class GenerationBackend(Protocol):
    id: str

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[str]: ...


class HFBackend:
    """Batched greedy generation, left-padded, longest prompts first (less padding), with tokens/s logged."""

    def __init__(
        self,
        model_ref: str | Path,
        dtype: torch.dtype,
        batch_size: int = 16,
        min_new_tokens: int = 0,
        temperature: float = 0.0,
        seed: int = 0,
        stop: list[str] | None = None,
        max_batch_tokens: int | None = None,
    ):
        from alignrepro.models import load_model, load_tokenizer, model_identity

        self.tokenizer = load_tokenizer(model_ref, padding_side="left")
        self.model = load_model(model_ref, dtype=dtype).eval()
        self.batch_size, self.max_batch_tokens = batch_size, max_batch_tokens
        self.temperature, self.seed, self.stop = temperature, seed, stop or []
        self.min_new_tokens = min_new_tokens  # ci tier: a random model would otherwise often stop at once
        # Never emit BOS/UNK-like specials mid-answer (a random ci model otherwise decodes to empty strings).
        eos = self.tokenizer.eos_token_id
        self.suppress = sorted({i for i in self.tokenizer.all_special_ids if i != eos}) or None
        self.identity = model_identity(model_ref)
        self.id = f"hf:{stable_hash(self.identity)}"  # historical prefix kept: ids are recorded in provenance

    @inference_mode
    def generate(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        import torch

        torch.manual_seed(self.seed)  # greedy by default; a seeded sampler when temperature > 0
        lengths = [len(ids) for ids in self.tokenizer(prompts)["input_ids"]]
        outputs: dict[int, str] = {}
        n_tokens, start = 0, time.perf_counter()
        bar = tqdm(total=len(prompts), desc="generate", unit="prompt")
        for idx in length_batches(lengths, self.batch_size, self.max_batch_tokens):
            # Same tokenization as training (the tokenizer's default special tokens).
            enc = self.tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True)
            out = self.model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                min_new_tokens=self.min_new_tokens,
                suppress_tokens=self.suppress,
                stop_strings=self.stop or None,
                tokenizer=self.tokenizer,
                do_sample=self.temperature > 0,
                temperature=self.temperature or None,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
            )
            new = out[:, enc["input_ids"].shape[1] :]
            for i, row in zip(idx, new, strict=True):
                n_tokens += int((row != self.tokenizer.pad_token_id).sum())
                outputs[i] = cut_at_stop(self.tokenizer.decode(row, skip_special_tokens=True), self.stop)
            bar.update(len(idx))
            bar.set_postfix(tok_s=f"{n_tokens / (time.perf_counter() - start):.1f}")
        bar.close()
        elapsed = time.perf_counter() - start
        log.info(
            "generated %d tokens for %d prompts in %.1fs (%.1f tokens/s)",
            n_tokens,
            len(prompts),
            elapsed,
            n_tokens / max(elapsed, 1e-9),
        )
        self.last_stats = {
            "n_tokens": n_tokens,
            "seconds": round(elapsed, 2),
            "tokens_per_s": round(n_tokens / max(elapsed, 1e-9), 2),
            "dtype": str(self.model.dtype).removeprefix("torch."),  # fp32 vs bf16 was chosen for this machine
        }
        return [outputs[i] for i in range(len(prompts))]


def length_batches(lengths: list[int], batch_size: int, max_batch_tokens: int | None = None) -> list[list[int]]:
    """Indices grouped longest first; a batch also stops growing once rows x its longest prompt would pass
    `max_batch_tokens` (left padding makes every row as long as the longest: a few long jailbreak prompts in a batch
    of short ones cost more in padding than in text)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        last = batches[-1] if batches else None
        # Longest first: the batch's first row sets its padded length.
        if (
            last
            and len(last) < batch_size
            and (max_batch_tokens is None or (len(last) + 1) * lengths[last[0]] <= max_batch_tokens)
        ):
            last.append(i)
        else:
            batches.append([i])
    return batches


class OpenAIBackend:
    """Completions from an OpenAI-compatible endpoint (a vLLM server at the full tier), one request per prompt."""

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        max_requests: int | None = None,
    ):
        from alignrepro.judges.openai_api import OpenAIChatClient

        self.client = OpenAIChatClient(
            base_url=base_url, model=model, api_key_env=api_key_env, max_requests=max_requests
        )
        self.id = f"openai:{model}"

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        return self.generate_chat([[{"role": "user", "content": p}] for p in prompts], max_new_tokens)

    def generate_chat(self, conversations: list[list[dict[str, str]]], max_new_tokens: int) -> list[str]:
        """Chat messages as they are (a system prompt stays a system message)."""
        return [
            self.client.chat(messages, max_tokens=max_new_tokens)["text"].strip()
            for messages in tqdm(conversations, desc="generate", unit="prompt")
        ]


def make_backend(spec: GenerationSpec | dict[str, Any], model_ref: str | Path | None) -> GenerationBackend:
    """The backend a spec names (a dict is typed first: see `_typed`)."""
    from alignrepro.models import choose_dtype

    spec = _typed(spec, model_ref)
    if spec.backend == "local":
        common = {
            "dtype": choose_dtype(spec.dtype),
            "batch_size": spec.batch_size,
            "temperature": spec.temperature,
            "seed": spec.seed,
            "max_batch_tokens": spec.max_batch_tokens,
        }
        # A kind a paper registers (MoTE's step-routed experts write their own chain) brings its own backend; it
        # gets the shared settings and, as `spec`, its own settings (`options`, e.g. MoTE's step_max_tokens).
        paper_backend = kind_object(model_ref, "backend")
        if paper_backend is not None:
            return paper_backend(model_ref, spec=dict(spec.options), **common)
        return HFBackend(
            model_ref,
            min_new_tokens=spec.min_new_tokens,
            stop=spec.stop if spec.stop is not None else TEMPLATE_STOPS.get(spec.template, []),
            **common,
        )
    return OpenAIBackend(spec.model, spec.base_url, spec.api_key_env, spec.max_requests)  # the only other backend


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m alignrepro.generation", description="Generate responses for a JSONL of records with one model."
    )
    p.add_argument("--model", type=Path, help="model folder (with model.json); not needed for --backend openai")
    p.add_argument("--prompts", type=Path, required=True, help="JSONL of records (instruction, input)")
    p.add_argument("--out", type=Path, required=True, help="output JSONL: the records with `output` filled")
    p.add_argument(
        "--spec-json",
        default="{}",
        help='generation settings as JSON, e.g. {"max_new_tokens": 64, '
        '"batch_size": 16, "template": "alpaca", "backend": "local"}',
    )
    p.add_argument("--tier", default="unknown")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    spec = parse_spec(json.loads(args.spec_json), args.model, "--spec-json")
    records = load_prompts(args.prompts)
    backend = make_backend(spec, args.model)
    tokenizer = getattr(backend, "tokenizer", None)
    prompts = [format_prompt(spec.template, r, tokenizer) for r in records]
    texts = backend.generate(prompts, spec.max_new_tokens or 64)
    for r, t in zip(records, texts, strict=True):
        r.output = t
        r.meta = {**r.meta, "generator": backend.id}
    save_records(args.out, records)
    atomic_write_json(
        args.out.with_suffix(".provenance.json"),
        provenance(
            tier=args.tier,
            config=spec.to_dict(),
            model=getattr(backend, "identity", backend.id),
            prompts_sha256=stable_hash([r.prompt_text for r in records], 64),
            stats=getattr(backend, "last_stats", {}),
        ),
    )


if __name__ == "__main__":
    main()
