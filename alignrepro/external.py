"""External checkpoints as model references: a plain Hugging Face folder (config.json + weights + tokenizer) or a
PEFT adapter folder (adapter_config.json + adapter weights) becomes a model folder the engine loads, without
copying a weight.

`import_model` writes a reference folder holding only model.json:
  {"kind": "base", "weights": "/abs/hf-folder", "source": "external", "external": {"path": …, "files": manifest}}
  {"kind": "lora", "base": "<model folder>", "adapter": "/abs/adapter-folder", "external": {…}}
The adapter's base is a registry model folder (results/models/<name>), a model folder with model.json, or a plain HF
folder, which is imported beside it as `<reference>/base`. The `external` manifest records the size and sha256 of
the checkpoint's files (the top-level files HF and PEFT write, trainer state and model cards left out);
`alignrepro.models.read_model_meta` checks them on every load, so a checkpoint changed after its import is never
used under the old hashes. It is kept apart from `files` on purpose: the workflow's start-up scan would stop at a
changed `files` manifest, while the checkpoint's files are inputs of `evals_import_model`, so Snakemake itself
re-imports and re-scores the model when they change.

`resolve_model` is the one resolver behind every command that asks for a model (`alignrepro <step> --model`,
`evaluate --model/--base`, a paper step's `--base`/`--policy`): a model folder (model.json) is used as it is; a plain
HF folder or a PEFT adapter folder (its base from adapter_config.json or `--base`) gets a reference (under
`.cache/model-refs/`, or the caller's folder); a registry name is results/models/<name>; a hub id (`org/name`,
`org/name@revision`: the full tier's way) gets a reference loaded through from_pretrained, after checking the hub
(or, offline, the local HF cache) has it.

Used by `alignrepro evaluate --model <folder>` and by the workflow's `evals.external` entries (evals/shared.smk).
CLI: `python -m alignrepro.external --help`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from alignrepro.errors import UserError
from alignrepro.integrity import file_manifest, manifest_hash
from alignrepro.io import atomic_write_json, stable_hash

log = logging.getLogger(__name__)
PROMPT_TEMPLATES = ("chat", "alpaca", "hh")
# Files a Trainer or the hub leave beside a checkpoint that loading never reads: not hashed, not workflow inputs.
NOT_LOADED = re.compile(
    r"^(optimizer\.pt|scheduler\.pt|scaler\.pt|rng_state.*\.pth|trainer_state\.json|training_args\.bin|.*\.md)$"
)


def folder_kind(path: str | Path) -> str:
    """The folder's layout: "model" (has model.json: already a model folder), "peft" (adapter_config.json) or
    "hf" (config.json)."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: not a folder (expected a Hugging Face model folder or a PEFT adapter folder)")
    if (path / "model.json").is_file():
        return "model"
    if (path / "adapter_config.json").is_file():
        return "peft"
    if (path / "config.json").is_file():
        return "hf"
    raise UserError(
        f"{path}: neither a Hugging Face model folder (config.json + weights + tokenizer) nor a PEFT adapter folder "
        "(adapter_config.json + adapter weights) nor a model folder with model.json"
    )


def checkpoint_files(path: str | Path) -> list[Path]:
    """The files of a checkpoint that loading reads: top-level (HF and PEFT save flat), no hidden files, no model
    card or trainer state (a changed README must not re-score a model)."""
    return sorted(
        p for p in Path(path).iterdir() if p.is_file() and not p.name.startswith(".") and not NOT_LOADED.match(p.name)
    )


def adapter_base(path: str | Path) -> str | None:
    """The base model an adapter was trained on, as PEFT recorded it (a hub id or a local folder)."""
    try:
        cfg = json.loads((Path(path) / "adapter_config.json").read_text(encoding="utf-8"))
    except ValueError as e:
        raise UserError(f"{Path(path) / 'adapter_config.json'}: not valid JSON ({e})") from e
    return cfg.get("base_model_name_or_path") or None


def _external(path: Path) -> dict[str, Any]:
    files = file_manifest(path, [p.name for p in checkpoint_files(path)])
    return {"path": str(path), "files": files}


def _check_template(template: str, tokenizer_ref: Path, where: Path) -> None:
    """A chat-format model needs a chat template: fail at import, not in the middle of answering. `tokenizer_ref`
    is a model folder with model.json (its load_tokenizer) or a plain HF folder."""
    if template not in PROMPT_TEMPLATES:
        raise UserError(f"prompt template {template!r}: expected one of {', '.join(PROMPT_TEMPLATES)}")
    if template != "chat":
        return
    if (tokenizer_ref / "model.json").is_file():
        from alignrepro.models import load_tokenizer

        tok = load_tokenizer(tokenizer_ref)
    else:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tokenizer_ref)
    if not tok.chat_template:
        raise UserError(
            f"{where}: its tokenizer has no chat template; give the prompt format it was trained in "
            "(evals.external.<name>.prompt_template or --prompt-template: alpaca or hh)"
        )


def import_model(
    path: str | Path, out: str | Path, name: str, base: str | Path | None = None, prompt_template: str = "chat"
) -> dict[str, Any]:
    """Write `out/model.json`, a reference to the external checkpoint at `path` (see the module docstring).
    `base` (adapters only): a model folder (with model.json) or a plain HF folder; default: the base recorded in
    adapter_config.json, when it is a local folder."""
    src, out = Path(path).resolve(), Path(out)
    kind = folder_kind(src)
    if kind == "model":
        raise UserError(f"{src}: already a model folder (it has a model.json): use it as it is")
    out.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"name": name, "source": "external", "prompt_template": prompt_template}
    if kind == "hf":
        if base is not None:
            raise UserError(f"{src}: a full model folder takes no base (a base is for PEFT adapter folders)")
        ext = _external(src)
        _check_template(prompt_template, src, src)
        meta |= {"kind": "base", "weights": str(src), "weights_sha256": manifest_hash(ext["files"]), "external": ext}
    else:
        recorded = adapter_base(src)
        base = base if base is not None else recorded
        if base is None or not Path(base).is_dir():
            raise UserError(
                f"{src}: its base {str(base)!r} (adapter_config.json) is not a local folder: name the base "
                "(evals.external.<name>.base: a registry model or a folder; alignrepro evaluate --base)"
            )
        base_kind = folder_kind(base)
        if base_kind == "peft":
            raise UserError(f"{base}: an adapter folder cannot be the base of another adapter here; merge it first")
        base_ref = Path(base)
        if base_kind == "hf":  # a plain base folder gets its own reference beside the adapter's
            base_ref = out / "base"
            import_model(base, base_ref, f"{name}-base", prompt_template=prompt_template)
        ext = _external(src)
        _check_template(prompt_template, base_ref, src)
        meta |= {
            "kind": "lora",
            "base": str(base_ref),
            "adapter": str(src),
            "adapter_sha256": manifest_hash(ext["files"]),
            "external": ext,
        }
        if recorded and Path(recorded).resolve() != Path(base).resolve():
            meta["adapter_base_recorded"] = recorded  # PEFT's own note, kept when another base was given
    atomic_write_json(out / "model.json", meta)  # last: its presence means the reference is complete
    log.info("%s (%s) -> %s", src, kind, out / "model.json")
    return meta


def plan(
    name: str, entry: dict[str, Any], registry: Iterable[str], models_dir: str = "results/models"
) -> dict[str, Any]:
    """How the workflow imports config entry `evals.external.<name>` (evals/shared.smk), checked at start:
    {"kind": hf | peft | model, "path": absolute folder, "base": the base folder to pass (adapters), "registry_base":
    a registry name or None, "inputs": the files whose change re-imports it, "prompt_template": …}."""
    from alignrepro.config import ConfigError

    key = f"evals.external.{name}"
    registry = set(registry)

    def fail(sub: str, msg: str) -> ConfigError:
        return ConfigError(f"config key '{key}.{sub}': {msg}")

    try:
        src = Path(entry["path"]).resolve()
        kind = folder_kind(src)
    except UserError as e:
        raise fail("path", str(e)) from None
    base = entry.get("base")
    out: dict[str, Any] = {"kind": kind, "path": str(src), "base": None, "registry_base": None}
    out["prompt_template"] = entry.get("prompt_template", "chat")
    if kind != "peft":
        if base is not None:
            raise fail("base", f"{src} is a full model, not a PEFT adapter folder: it takes no base")
        out["inputs"] = [f"{src}/model.json"] if kind == "model" else [str(p) for p in checkpoint_files(src)]
        return out
    out["inputs"] = [str(p) for p in checkpoint_files(src)]
    recorded = adapter_base(src)
    if base is None:
        if recorded is None or (recorded not in registry and not Path(recorded).is_dir()):
            names = ", ".join(sorted(registry))
            raise fail(
                "base",
                f"missing: the adapter's recorded base {recorded!r} is no registry model and no local folder; "
                f"set it to a registry model ({names}) or a model folder",
            )
        base = recorded
    if base in registry:
        out["registry_base"] = base
        out["base"] = f"{models_dir}/{base}"
        out["inputs"].append(f"{models_dir}/{base}/model.json")  # built by the base_model rule
        return out
    folder = Path(base).resolve()
    if not folder.is_dir():
        raise fail("base", f"{base!r} is neither a registry model ({', '.join(sorted(registry))}) nor a folder")
    try:
        base_kind = folder_kind(folder)
    except UserError as e:
        raise fail("base", str(e)) from None
    if base_kind == "peft":
        raise fail("base", f"{folder} is an adapter folder; the base must be a full model")
    out["base"] = str(folder)
    out["inputs"] += [f"{folder}/model.json"] if base_kind == "model" else [str(p) for p in checkpoint_files(folder)]
    return out


MODEL_FORMS = (
    "a model folder (model.json), a Hugging Face model folder (config.json + weights), a PEFT adapter folder "
    "(adapter_config.json), a registry model name or a hub id (org/name[@revision])"
)
HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(@(?P<revision>[\w./-]+))?$")


def refs_dir() -> Path:
    """Where references to checkpoints named on the command line go ($ALIGNREPRO_MODEL_REFS, else .cache/)."""
    return Path(os.environ.get("ALIGNREPRO_MODEL_REFS") or Path(__file__).resolve().parents[1] / ".cache/model-refs")


def hub_reference(value: str, out: Path, prompt_template: str = "chat", option: str = "--model") -> Path:
    """Write out/model.json referencing hub model `org/name[@revision]` (loaded through from_pretrained, as the full
    tier's registry models are), pinned to the commit the hub or the local HF cache resolves; a clear error when
    neither has it (offline: HF_HUB_OFFLINE=1 and not downloaded)."""
    match = HUB_ID.match(value)
    if match is None:
        raise UserError(f"{option} {value!r}: not a hub id; expected {MODEL_FORMS}")
    repo, revision = match["repo"], match["revision"]
    from huggingface_hub import hf_hub_download

    try:
        config = Path(hf_hub_download(repo, "config.json", revision=revision))
    except Exception as e:  # noqa: BLE001 - offline, unknown repo, gated, no network: all the user's to fix
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
        first = (str(e).strip().splitlines() or [""])[0][:120]
        why = "HF_HUB_OFFLINE=1 and it is not in the local HF cache" if offline else f"{type(e).__name__}: {first}"
        raise UserError(
            f"{option} {value!r}: no such local folder, and the hub cannot give it ({why}); expected {MODEL_FORMS}; "
            "a hub model needs the network once (or a copy in the HF cache)"
        ) from e
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "kind": "base",
        "name": value,
        "weights": repo,
        "revision": config.parent.name if config.parent.parent.name == "snapshots" else revision,
        "source": "hub",
        "prompt_template": prompt_template,
    }
    atomic_write_json(out / "model.json", meta)
    try:
        _check_template(prompt_template, out, Path(value))
    except UserError:
        (out / "model.json").unlink()
        raise
    return out


def resolve_model(
    value: str | Path,
    *,
    option: str = "--model",
    base: str | Path | None = None,
    prompt_template: str | None = None,
    models_dir: str | Path = "results/models",
    out: str | Path | None = None,
) -> Path:
    """The model folder (with model.json) for whatever names a model (MODEL_FORMS). A checkpoint without model.json
    gets a reference written to `out` (default: a folder under refs_dir() named by the checkpoint and options);
    `base` and `prompt_template` apply to those only. Every failure is a UserError naming `option`."""
    text = str(value)
    path = Path(text).expanduser()
    if path.is_dir():
        try:
            kind = folder_kind(path)
        except UserError as e:
            raise UserError(f"{option}: {e}") from None
        if kind == "model":
            if base is not None or prompt_template is not None:
                raise UserError(
                    f"{option} {path}: has a model.json (it names its base and format): drop --base/--prompt-template"
                )
            from alignrepro.models import read_model_meta

            read_model_meta(path, verify=False)  # a model.json that does not parse or names no kind: say so now
            return path
        if base is not None and not Path(base).is_dir():
            base = resolve_model(base, option="--base", models_dir=models_dir)
        elif base is None and kind == "peft":  # a hub id recorded as the adapter's base: reference it too
            recorded = adapter_base(path)
            if recorded and not Path(recorded).is_dir() and HUB_ID.match(recorded):
                base = resolve_model(recorded, option=f"{path / 'adapter_config.json'} base_model_name_or_path")
        template = prompt_template or "chat"
        key = stable_hash([str(path.resolve()), str(base), template], 10)
        ref = Path(out) if out is not None else refs_dir() / f"{path.resolve().name}-{key}"
        import_model(path, ref, path.resolve().name, base, template)
        return ref
    if path.exists():
        raise UserError(f"{option} {text}: a file; expected {MODEL_FORMS}")
    registry = Path(models_dir) / text
    if "/" not in text and (registry / "model.json").is_file():
        if base is not None or prompt_template is not None:
            raise UserError(f"{option} {text!r}: a registry model (it names its base and format): drop --base")
        return registry
    if HUB_ID.match(text) and not text.startswith((".", "/", "~")):
        if base is not None:
            raise UserError(f"{option} {text!r}: a hub model takes no --base (adapters on the hub: download them)")
        ref = Path(out) if out is not None else refs_dir() / f"hub-{_slug(text)}-{stable_hash(text, 8)}"
        return hub_reference(text, ref, prompt_template or "chat", option)
    raise UserError(f"{option} {text!r}: no such folder; expected {MODEL_FORMS}")


def _slug(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(
        prog="python -m alignrepro.external",
        description="Write a model reference (model.json, no weights copied) to a plain Hugging Face folder or a "
        "PEFT adapter folder, so every step can load it.",
    )
    ap.add_argument("--path", required=True, type=Path, help="the checkpoint folder (HF model or PEFT adapter)")
    ap.add_argument("--name", required=True, help="the model's name (recorded in model.json)")
    ap.add_argument(
        "--base",
        default=None,
        help="adapters: the base (a model folder, registry name or hub id; default: adapter_config.json's base)",
    )
    ap.add_argument("--prompt-template", default="chat", choices=PROMPT_TEMPLATES, help="the format it answers in")
    ap.add_argument("--out", required=True, type=Path, help="the reference folder to write (holds model.json)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    base = args.base
    if base is not None and not Path(base).is_dir():  # a registry name or a hub id, as everywhere else
        base = resolve_model(base, option="--base")
    return import_model(args.path, args.out, args.name, base, args.prompt_template)


if __name__ == "__main__":
    main()
