"""In-process Hugging Face judge, scored by next-token probabilities instead of generated text.

Small judges rarely follow an output format, so:
- pairwise (AlpacaEval 2's classifier prompt): compare P("m") and P("M"), the labels of output_1 / output_2, at the
  first answer position, in both orders (see `both_orders`);
- `rate` (MT-Bench single-answer grading): the answer is prefilled with "Rating: [[" and the score is the expected
  rating over the rating tokens ("10" = "1" followed by "0", read with one more cached decoding step);
- `choose` (MT-Bench pairwise): prefilled with "[[", the verdict is the expectation over "A" / "B" / "C" (tie).

Renormalising over the allowed tokens hides an answer that was not one of them (SmolLM2-135M puts ~12 % of its
next-token mass on "m"/"M"), so every judgment records that mass; below `min_answer_mass` it is "unparsable": NaN,
counted by the score files and cards, never cached. Default 0.5: the judgment stands only when a sampled answer
would more likely than not be one of the allowed tokens, the condition under which a text judge's parser would
usually succeed. A prompt cut to `max_length` is flagged "truncated" (`last_judgments` holds a call's details).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from alignrepro.io import sha256_file, sha256_text
from alignrepro.judges.base import (
    Judgment,
    PairItem,
    check_preferences,
    load_annotator,
    render_messages,
    swapped,
    template_to_messages,
)

log = logging.getLogger(__name__)

ANNOTATOR = "alpaca_eval_clf_gpt4_turbo"  # its prompt asks for "m" (output_1) or "M" (output_2)
LABELS = ("m", "M")
RATING_PREFIX = "Rating: [["  # MT-Bench's own example answer format
VERDICT_PREFIX = "[["
DEFAULT_MIN_ANSWER_MASS = 0.5
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
)


@dataclass
class _Batch:
    input_ids: torch.Tensor  # the rows' own tokens (after the shared prefix), left-padded
    mask: torch.Tensor  # attention mask over prefix + padded suffix
    cache: object | None  # the shared prefix's KV cache, repeated per row
    n_prefix: int


def weights_sha256(model_dir: str | Path) -> str:
    files = sorted(Path(model_dir).glob("*.safetensors")) or sorted(Path(model_dir).glob("*.bin"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors (or *.bin) weights in {model_dir}")
    if len(files) == 1:
        return sha256_file(files[0])
    return sha256_text("".join(f"{f.name}:{sha256_file(f)}\n" for f in files))  # sharded checkpoint


def tokenizer_sha256(model_dir: str | Path) -> str:
    """Hash of the tokenizer's files (vocabulary, merges, special tokens, the chat template file if any)."""
    files = [Path(model_dir) / n for n in TOKENIZER_FILES if (Path(model_dir) / n).is_file()]
    return sha256_text("".join(f"{f.name}:{sha256_file(f)}\n" for f in files))


def swap_label_names(template: str) -> str:
    """The classifier prompt with output_1 named "M" and output_2 named "m" (label-token bias apart from position)."""
    a, b = (f'"model_identifier": "{x}"' for x in LABELS)
    if template.count(a) != 1 or template.count(b) != 1:
        raise ValueError(f"annotator {ANNOTATOR}: expected one {a} and one {b} in its prompt")
    return template.replace(a, "\0").replace(b, a).replace("\0", b)


class LocalLogprobJudge:
    heuristic = False
    label_swap = True  # single_order(items, swap_labels=True) names output_1 "M" and output_2 "m"

    def __init__(
        self,
        model_dir: str | Path,
        dtype: torch.dtype = torch.float32,
        batch_size: int = 4,
        max_length: int = 1024,
        device: str | None = None,
        min_answer_mass: float = DEFAULT_MIN_ANSWER_MASS,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_dir = Path(model_dir)
        self.batch_size, self.max_length = int(batch_size), int(max_length)
        self.min_answer_mass = float(min_answer_mass)
        if not 0.0 <= self.min_answer_mass <= 1.0:
            raise ValueError(f"min_answer_mass must lie in [0, 1], got {min_answer_mass}")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if (self.model_dir / "model.json").is_file():  # a registry model: its files must match their manifest
            from alignrepro.integrity import verify_model_dir

            verify_model_dir(self.model_dir)
        self.tok = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=dtype, local_files_only=True)
        self.model.to(self.device).eval()
        self.template, _ = load_annotator(ANNOTATOR)
        self.messages = template_to_messages(self.template)
        self.messages_swapped = template_to_messages(swap_label_names(self.template))
        self.id = f"local:{self.model_dir.resolve().name}:{weights_sha256(self.model_dir)[:12]}"
        self.prompt_hash = sha256_text(self.template)
        # Everything besides the weights (in `id`) and the prompt that makes a judgment: all in the cache key.
        self.settings = {
            "max_length": self.max_length,
            "dtype": str(dtype),
            "labels": list(LABELS),
            "prefixes": [RATING_PREFIX, VERDICT_PREFIX],
            "tokenizer_sha256": tokenizer_sha256(self.model_dir),
            "chat_template_sha256": sha256_text(self.tok.chat_template or ""),
            "scoring": "next-token probabilities, no sampling (temperature and max tokens do not apply)",
            "min_answer_mass": self.min_answer_mass,
        }
        self.label_ids = [self._label_id(label) for label in LABELS]
        if self.label_ids[0] == self.label_ids[1]:
            raise ValueError(f"{self.id}: labels {LABELS} map to the same token {self.label_ids[0]}")
        self.pad_id = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id or 0
        # Tokens that can close a rating right after "1" ("]]", "]"): the alternative to "10".
        self.close_ids = sorted({self.tok.encode(t, add_special_tokens=False)[0] for t in ("]]", "]")})
        self.n_truncated = 0
        self.last_judgments: list[Judgment] | None = None  # the details of the last call, in input order

    def _label_id(self, label: str) -> int:
        ids = self.tok.encode(label, add_special_tokens=False)
        if len(ids) != 1:
            log.warning("judge label %r is %d tokens for %s; scoring its first token", label, len(ids), self.id)
        return ids[0]

    def render(self, item: PairItem, swap_labels: bool = False) -> str:
        messages = render_messages(self.messages_swapped if swap_labels else self.messages, item)
        if not self.tok.chat_template:
            log.warning("%s has no chat template; using the plain prompt text", self.id)
            return "\n\n".join(m["content"] for m in messages) + "\n\n"
        try:
            return self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:  # some templates reject a system role: fold it into the user turn
            merged = [{"role": "user", "content": "\n\n".join(m["content"] for m in messages)}]
            return self.tok.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)

    def _ids(self, item: PairItem, swap_labels: bool = False) -> list[int]:
        # the template adds any BOS itself
        return self.tok.encode(self.render(item, swap_labels), add_special_tokens=False)

    def encode(self, item: PairItem, swap_labels: bool = False) -> list[int]:
        return self._encode(item, swap_labels)[0]

    def _encode(self, item: PairItem, swap_labels: bool = False) -> tuple[list[int], bool]:
        """(prompt ids within max_length, whether they were cut): the two outputs are shortened (never the judge's
        instructions)."""
        ids = self._ids(item, swap_labels)
        if len(ids) <= self.max_length:
            return ids, False
        self.n_truncated += 1
        o1 = self.tok.encode(item.output_1, add_special_tokens=False)
        o2 = self.tok.encode(item.output_2, add_special_tokens=False)
        avail = self.max_length - len(self._ids(PairItem(item.instruction, "", ""), swap_labels)) - 8
        for _ in range(4):
            if avail <= 0:
                break
            b1 = min(len(o1), avail // 2)  # water-filling: a short output keeps all of its tokens
            b2 = min(len(o2), avail - b1)
            b1 = min(len(o1), avail - b2)
            short = PairItem(item.instruction, self.tok.decode(o1[:b1]), self.tok.decode(o2[:b2]))
            ids = self._ids(short, swap_labels)
            if len(ids) <= self.max_length:
                return ids, True
            avail -= len(ids) - self.max_length + 8
        log.warning("judge prompt still longer than %d tokens; keeping its last tokens", self.max_length)
        return ids[-self.max_length :], True

    @torch.inference_mode()
    def _prefix_cache(self, seqs: list[list[int]]):
        """KV cache of the token prefix every prompt of the call shares (the judge template's instructions), so it is
        computed once per call instead of once per prompt; (length, cache) or (0, None)."""
        n = min(len(s) for s in seqs) - 1  # every row keeps at least one token of its own
        first = seqs[0]
        for s in seqs[1:]:
            n = next((k for k in range(n) if s[k] != first[k]), n)
        if n < 16:
            return 0, None
        out = self.model(input_ids=torch.tensor([first[:n]], device=self.device), use_cache=True, logits_to_keep=1)
        return n, out.past_key_values

    def _batches(self, seqs: list[list[int]]):
        """(row indices, batch) over batches of similar lengths (less padding); callers put results back."""
        n_prefix, prefix = self._prefix_cache(seqs)
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
        for start in tqdm(range(0, len(seqs), self.batch_size), desc=f"judge {self.id}", unit="batch", leave=False):
            idx = order[start : start + self.batch_size]
            batch = [seqs[i][n_prefix:] for i in idx]
            width = max(len(s) for s in batch)
            # Left padding of the suffixes: the last position of every row is the answer position.
            input_ids = torch.tensor([[self.pad_id] * (width - len(s)) + s for s in batch], device=self.device)
            mask = torch.tensor([[1] * n_prefix + [0] * (width - len(s)) + [1] * len(s) for s in batch])
            cache = None
            if prefix is not None:
                cache = copy.deepcopy(prefix)  # the forward pass appends to it
                cache.batch_repeat_interleave(len(idx))
            yield idx, _Batch(input_ids, mask.to(self.device), cache, n_prefix)

    @staticmethod
    def _place(n: int, parts: list[tuple[list[int], list]]) -> list:
        out: list = [math.nan] * n
        for idx, values in parts:
            for i, v in zip(idx, values, strict=True):
                out[i] = v
        return out

    def _judgments(self, values: list[float], masses: list[float], truncated: list[bool]) -> list[Judgment]:
        """Values whose answer-token mass is below the threshold become NaN (unparsable); kept in last_judgments."""
        out = []
        for v, m, t in zip(values, masses, truncated, strict=True):
            low = not m >= self.min_answer_mass  # NaN mass counts as low
            v = float(v) if math.isfinite(v) else math.nan
            out.append(Judgment(math.nan if low else v, float(m), low, bool(t), v))
        n_low = sum(j.unparsable for j in out)
        if n_low:
            log.warning("%s: %d of %d judgments unparsable (answer-token mass < %s)", self.id, n_low, len(out),
                        self.min_answer_mass)  # fmt: skip
        self.last_judgments = out
        return out

    def _forward(self, b: _Batch, use_cache: bool = False):
        # Positions count real tokens only, so padded rows see the same positions as unpadded ones.
        positions = (b.mask.cumsum(-1) - 1).clamp(min=0)[:, b.n_prefix :]
        # logits_to_keep=1: only the answer position's logits (the 49k-vocab head over every position costs ~1/5).
        return self.model(
            input_ids=b.input_ids,
            attention_mask=b.mask,
            position_ids=positions,
            past_key_values=b.cache,
            use_cache=use_cache or b.cache is not None,
            logits_to_keep=1,
        )

    @torch.inference_mode()
    def _score(self, items: list[PairItem], swap_labels: bool = False) -> list[Judgment]:
        """One order: 1 + P(output_2's label), normalized over the two labels; with swap_labels output_2 is "m"."""
        if not items:
            self.last_judgments = []
            return []
        encoded = [self._encode(it, swap_labels) for it in items]
        parts = []
        for idx, b in self._batches([ids for ids, _ in encoded]):
            probs = torch.softmax(self._forward(b).logits[:, -1, :].float(), dim=-1)[:, self.label_ids]
            second = probs[:, 0 if swap_labels else 1] / probs.sum(-1).clamp_min(1e-30)
            parts.append((idx, list(zip((1.0 + second).tolist(), probs.sum(-1).tolist(), strict=True))))
        placed = self._place(len(items), parts)
        return self._judgments([v for v, _ in placed], [m for _, m in placed], [t for _, t in encoded])

    def preferences(self, items: list[PairItem]) -> list[float]:
        """Both orders (see base.both_orders); a judgment is unparsable when either order is, truncated when either
        is, and its answer mass is the smaller of the two."""
        n = len(items)
        both = self._score(list(items) + [swapped(it) for it in items])
        check_preferences([j.value for j in both], 2 * n, self.id)
        out = []
        for a, b in zip(both[:n], both[n:], strict=True):
            mass = min(a.answer_mass, b.answer_mass)  # type: ignore[type-var]  # _score always measures it
            renormalised = None if a.renormalised is None or b.renormalised is None else (
                (a.renormalised + 3.0 - b.renormalised) / 2.0)  # fmt: skip
            out.append(Judgment((a.value + 3.0 - b.value) / 2.0, mass, a.unparsable or b.unparsable,
                                a.truncated or b.truncated, renormalised))  # fmt: skip
        self.last_judgments = out
        return [j.value for j in out]

    def single_order(self, items: list[PairItem], swap_labels: bool = False) -> list[float]:
        """Verdicts in the order given (judge cards measure position and label-token bias with it)."""
        return [j.value for j in self._score(items, swap_labels)]

    # --- prompts rendered by a benchmark (alignrepro.judges.grading) ----------------------------------------------
    def _encode_messages(self, messages: list[dict[str, str]], prefix: str) -> tuple[list[int], bool]:
        if self.tok.chat_template:
            try:
                text = self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            except Exception:  # a template without a system role: fold everything into the user turn
                merged = [{"role": "user", "content": "\n\n".join(m["content"] for m in messages)}]
                text = self.tok.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)
        else:
            text = "\n\n".join(m["content"] for m in messages) + "\n\n"
        ids = self.tok.encode(text + prefix, add_special_tokens=False)
        if len(ids) > self.max_length:
            # Keep the judge's instructions (head) and the answer slot (tail); the middle is the longest content.
            self.n_truncated += 1
            log.warning("judge prompt of %d tokens cut to %d (middle removed)", len(ids), self.max_length)
            head = self.max_length // 2
            ids = ids[:head] + ids[len(ids) - (self.max_length - head) :]
            return ids, True
        return ids, False

    def _token(self, text: str) -> int:
        ids = self.tok.encode(text, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"{self.id}: {text!r} is {len(ids)} tokens; constrained grading needs one token each")
        return ids[0]

    @torch.inference_mode()
    def rate(self, prompts: list[list[dict[str, str]]], scale: tuple[int, int] = (1, 10)) -> list[float]:
        """Expected rating over the scale's tokens after the prefilled "Rating: [[" (no NaN: nothing to parse)."""
        lo, hi = scale
        if not 0 <= lo < hi <= 10:
            raise ValueError(f"rating scale {scale} unsupported: ratings must be 0..10")
        digit = {r: self._token(str(r)) for r in range(lo, min(hi, 9) + 1)}
        ten = hi == 10
        if not prompts:
            self.last_judgments = []
            return []
        encoded = [self._encode_messages(m, RATING_PREFIX) for m in prompts]
        parts = []
        for idx, b in self._batches([ids for ids, _ in encoded]):
            res = self._forward(b, use_cache=ten)
            probs = torch.softmax(res.logits[:, -1, :].float(), dim=-1)
            p = {r: probs[:, i] for r, i in digit.items()}
            if ten:
                # P("10") = P("1") * P("0" | "1"), against "1" followed by the closing bracket.
                one = torch.full((b.input_ids.shape[0], 1), digit[1], device=self.device)
                mask2 = torch.cat([b.mask, torch.ones_like(one)], dim=1)
                pos = mask2.sum(-1, keepdim=True) - 1
                nxt = self.model(
                    input_ids=one,
                    attention_mask=mask2,
                    position_ids=pos,
                    past_key_values=res.past_key_values,
                    logits_to_keep=1,
                )
                q = torch.softmax(nxt.logits[:, -1, :].float(), dim=-1)
                zero, close = q[:, self._token("0")], q[:, self.close_ids].sum(-1)
                share10 = zero / (zero + close).clamp_min(1e-12)
                p[10], p[1] = p[1] * share10, p[1] * (1 - share10)
            # The answer mass is P(a rating token) at the first step ("10" starts with "1", already counted).
            total = sum(p.values())
            value = sum(r * v for r, v in p.items()) / total.clamp_min(1e-12)
            parts.append((idx, list(zip(value.tolist(), total.tolist(), strict=True))))
        placed = self._place(len(prompts), parts)
        out = self._judgments([v for v, _ in placed], [m for _, m in placed], [t for _, t in encoded])
        return [j.value for j in out]

    @torch.inference_mode()
    def choose(self, prompts: list[list[dict[str, str]]]) -> list[float]:
        """Expected verdict over "A" (1.0), "B" (2.0), "C" (tie, 1.5) after a prefilled "[["; one order."""
        ids = [self._token(x) for x in ("A", "B", "C")]
        value = torch.tensor([1.0, 2.0, 1.5], device=self.device)
        if not prompts:
            self.last_judgments = []
            return []
        encoded = [self._encode_messages(m, VERDICT_PREFIX) for m in prompts]
        parts = []
        for idx, b in self._batches([ids for ids, _ in encoded]):
            probs = torch.softmax(self._forward(b).logits[:, -1, :].float(), dim=-1)[:, ids]
            pref = (probs * value).sum(-1) / probs.sum(-1).clamp_min(1e-12)
            parts.append((idx, list(zip(pref.tolist(), probs.sum(-1).tolist(), strict=True))))
        placed = self._place(len(prompts), parts)
        out = self._judgments([v for v, _ in placed], [m for _, m in placed], [t for _, t in encoded])
        return [j.value for j in out]
