"""In-process Hugging Face judge: AlpacaEval 2's classifier prompt, scored by next-token log-probabilities.

Small judges rarely follow an output format, so instead of generating we compare P("m") and P("M") (the labels of
output_1 / output_2 in the prompt) at the first answer position, and judge both orders (see `both_orders`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from tqdm import tqdm

from alignrepro.io import sha256_file, sha256_text
from alignrepro.judges.base import PairItem, both_orders, load_annotator, render_messages, template_to_messages

log = logging.getLogger(__name__)

ANNOTATOR = "alpaca_eval_clf_gpt4_turbo"  # its prompt asks for "m" (output_1) or "M" (output_2)
LABELS = ("m", "M")


def weights_sha256(model_dir: str | Path) -> str:
    files = sorted(Path(model_dir).glob("*.safetensors")) or sorted(Path(model_dir).glob("*.bin"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors (or *.bin) weights in {model_dir}")
    if len(files) == 1:
        return sha256_file(files[0])
    return sha256_text("".join(f"{f.name}:{sha256_file(f)}\n" for f in files))  # sharded checkpoint


class LocalLogprobJudge:
    heuristic = False

    def __init__(
        self,
        model_dir: str | Path,
        dtype: torch.dtype = torch.float32,
        batch_size: int = 4,
        max_length: int = 1024,
        device: str | None = None,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_dir = Path(model_dir)
        self.batch_size, self.max_length = int(batch_size), int(max_length)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tok = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=dtype, local_files_only=True)
        self.model.to(self.device).eval()
        self.template, _ = load_annotator(ANNOTATOR)
        self.messages = template_to_messages(self.template)
        self.id = f"local:{self.model_dir.resolve().name}:{weights_sha256(self.model_dir)[:12]}"
        self.prompt_hash = sha256_text(self.template)
        self.settings = {"max_length": self.max_length, "dtype": str(dtype), "labels": list(LABELS)}
        self.label_ids = [self._label_id(label) for label in LABELS]
        if self.label_ids[0] == self.label_ids[1]:
            raise ValueError(f"{self.id}: labels {LABELS} map to the same token {self.label_ids[0]}")
        self.pad_id = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id or 0

    def _label_id(self, label: str) -> int:
        ids = self.tok.encode(label, add_special_tokens=False)
        if len(ids) != 1:
            log.warning("judge label %r is %d tokens for %s; scoring its first token", label, len(ids), self.id)
        return ids[0]

    def render(self, item: PairItem) -> str:
        messages = render_messages(self.messages, item)
        if not self.tok.chat_template:
            log.warning("%s has no chat template; using the plain prompt text", self.id)
            return "\n\n".join(m["content"] for m in messages) + "\n\n"
        try:
            return self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:  # some templates reject a system role: fold it into the user turn
            merged = [{"role": "user", "content": "\n\n".join(m["content"] for m in messages)}]
            return self.tok.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)

    def _ids(self, item: PairItem) -> list[int]:
        return self.tok.encode(self.render(item), add_special_tokens=False)  # the template adds any BOS itself

    def encode(self, item: PairItem) -> list[int]:
        """Prompt ids within max_length: the two outputs are shortened (never the judge's instructions)."""
        ids = self._ids(item)
        if len(ids) <= self.max_length:
            return ids
        o1 = self.tok.encode(item.output_1, add_special_tokens=False)
        o2 = self.tok.encode(item.output_2, add_special_tokens=False)
        avail = self.max_length - len(self._ids(PairItem(item.instruction, "", ""))) - 8
        for _ in range(4):
            if avail <= 0:
                break
            b1 = min(len(o1), avail // 2)  # water-filling: a short output keeps all of its tokens
            b2 = min(len(o2), avail - b1)
            b1 = min(len(o1), avail - b2)
            short = PairItem(item.instruction, self.tok.decode(o1[:b1]), self.tok.decode(o2[:b2]))
            ids = self._ids(short)
            if len(ids) <= self.max_length:
                return ids
            avail -= len(ids) - self.max_length + 8
        log.warning("judge prompt still longer than %d tokens; keeping its last tokens", self.max_length)
        return ids[-self.max_length :]

    @torch.inference_mode()
    def _score(self, items: list[PairItem]) -> list[float]:
        """One order: 1 + P(output_2's label), normalized over the two labels."""
        out: list[float] = []
        batches = range(0, len(items), self.batch_size)
        for start in tqdm(batches, desc=f"judge {self.id}", unit="batch", leave=False):
            seqs = [self.encode(it) for it in items[start : start + self.batch_size]]
            width = max(len(s) for s in seqs)
            # Left padding: the last position of every row is the answer position.
            input_ids = torch.tensor([[self.pad_id] * (width - len(s)) + s for s in seqs], device=self.device)
            mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=self.device)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)  # so padded rows see the same positions as unpadded ones
            logits = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions).logits[:, -1, :]
            pair = torch.log_softmax(logits.float(), dim=-1)[:, self.label_ids]
            out += (1.0 + torch.softmax(pair, dim=-1)[:, 1]).tolist()
        return out

    def preferences(self, items: list[PairItem]) -> list[float]:
        return both_orders(self._score, items)
