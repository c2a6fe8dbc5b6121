"""Model folders check themselves: model.json records every file's size and sha256; loading verifies them.

`model.json` is written last, so its presence means the model is complete, and its `files` manifest says what
complete means: {"adapter/adapter_model.safetensors": {"size": …, "sha256": …}, …}. A file that is missing, of
another size, or (checked by content) of another hash raises `IntegrityError` naming the file. Content hashes are
checked for every file under 64 MiB and for larger ones (base weights) whenever the file is newer than its
model.json, so a 0.5 GB base is not re-hashed by every job while a file changed after the model was written is.
`scan_models` runs the same check over a results tree at workflow start.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from alignrepro.errors import IntegrityError
from alignrepro.io import atomic_write_text, sha256_file

FULL_HASH_BELOW = 64 << 20
_verified: set[tuple] = set()  # (model.json, its mtime, its files' sizes and mtimes) verified in this process


def canonicalize_adapter_config(adapter_dir: str | Path) -> None:
    """PEFT writes `target_modules` (a set) in hash-seed order: identical adapters got different file hashes.
    Rewrite adapter_config.json with sorted lists and keys (PEFT reads it back unchanged)."""
    path = Path(adapter_dir) / "adapter_config.json"
    if not path.is_file():
        return
    cfg = json.loads(path.read_text())
    for key in ("target_modules", "modules_to_save", "exclude_modules", "trainable_token_indices"):
        if isinstance(cfg.get(key), list):
            cfg[key] = sorted(cfg[key], key=str)
    atomic_write_text(path, json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def file_manifest(model_dir: str | Path, parts: Iterable[str] = (".",)) -> dict[str, dict[str, Any]]:
    """{relative path: {size, sha256}} of every file under `parts` of a model folder, model.json and checkpoints
    excluded."""
    root = Path(model_dir)
    out: dict[str, dict[str, Any]] = {}
    for part in parts:
        base = root / part
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for p in files:
            rel = p.relative_to(root).as_posix()
            if rel == "model.json" or rel.startswith("checkpoints/") or "/." in f"/{rel}":
                continue
            out[rel] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
    return dict(sorted(out.items()))


def manifest_hash(manifest: dict[str, dict[str, Any]], prefix: str = "") -> str:
    """One hash of the files under `prefix` (e.g. "adapter/"), equal to io.sha256_dir of that folder: names and
    contents, independent of mtimes."""
    h = hashlib.sha256()
    for rel in sorted((r for r in manifest if r.startswith(prefix)), key=lambda r: Path(r).parts):
        h.update(rel.removeprefix(prefix).encode())
        h.update(manifest[rel]["sha256"].encode())
    return h.hexdigest()


def problems(model_dir: str | Path, meta: dict[str, Any] | None = None) -> list[str]:
    """What differs between a model folder and its model.json's manifest ([] when it matches or records none)."""
    root = Path(model_dir)
    meta_path = root / "model.json"
    if meta is None:
        meta = json.loads(meta_path.read_text())
    written = meta_path.stat().st_mtime_ns
    found = []
    for rel, want in (meta.get("files") or {}).items():
        path = root / rel
        if not path.is_file():
            found.append(f"{path}: missing (model.json records {want['size']} bytes)")
            continue
        st = path.stat()
        if st.st_size != want["size"]:
            found.append(f"{path}: {st.st_size} bytes, model.json records {want['size']} (truncated or replaced)")
        elif (st.st_size < FULL_HASH_BELOW or st.st_mtime_ns > written) and sha256_file(path) != want["sha256"]:
            found.append(f"{path}: sha256 differs from the one model.json records (corrupted or replaced)")
    return found


def _stats(root: Path, files: dict[str, Any]) -> tuple:
    out = []
    for rel in files:
        try:
            st = (root / rel).stat()
            out.append((rel, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((rel, None, None))
    return tuple(out)


def verify_model_dir(model_dir: str | Path, meta: dict[str, Any] | None = None) -> None:
    """Raise IntegrityError naming every file of the folder that differs from its model.json."""
    meta_path = Path(model_dir) / "model.json"
    if not meta_path.is_file():
        raise IntegrityError(f"{meta_path}: missing (a model folder is complete only once its model.json exists)")
    if meta is None:
        meta = json.loads(meta_path.read_text())
    key = (str(meta_path.resolve()), meta_path.stat().st_mtime_ns, _stats(Path(model_dir), meta.get("files") or {}))
    if key in _verified:
        return
    found = problems(model_dir, meta)
    if found:
        raise IntegrityError(
            "model files differ from model.json:\n  " + "\n  ".join(found) + f"\nRebuild it: snakemake --cores N "
            f"--forcerun {meta_path}  (retrains it and reruns what depends on it), or restore the file(s)."
        )
    _verified.add(key)


def scan_models(roots: Iterable[str | Path]) -> tuple[list[str], list[str]]:
    """(broken, orphaned) under results roots: model.json files whose folder differs from them, and folders that
    hold weights but no model.json (a step needing them would rebuild them and rerun everything after them)."""
    broken, orphaned = [], []
    for root in map(Path, roots):
        if not root.is_dir():
            continue
        for meta_path in sorted(root.rglob("model.json")):
            try:
                found = problems(meta_path.parent)
            except (OSError, ValueError) as e:
                found = [f"{meta_path}: unreadable ({e})"]
            if found:
                broken.append((str(meta_path), found))
        for weights in sorted(p for p in root.rglob("*.safetensors") if "checkpoints" not in p.relative_to(root).parts):
            folder = next((p for p in weights.parents if (p / "model.json").exists()), None)
            if (folder is None or not folder.is_relative_to(root)) and not _listed_beside(weights):
                top = weights.parent.parent if weights.parent.name in ("adapter", "tokenizer") else weights.parent
                if str(top) not in orphaned and ".partial" not in top.name:
                    orphaned.append(str(top))
    return [f"{m}: " + "; ".join(f) for m, f in broken], orphaned


def _listed_beside(weights: Path) -> bool:
    """A JSON file next to the weights whose `files` manifest names them owns them (a paper's own artefact, e.g.
    LD-Align's guide.json): they are recorded, not orphaned."""
    for meta in weights.parent.glob("*.json"):
        try:
            files = json.loads(meta.read_text()).get("files")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(files, dict) and weights.name in files:
            return True
    return False


def forced_by(argv: list[str]) -> tuple[bool, set[str]]:
    """(force everything?, files/rules given to -R/--forcerun) on a Snakemake command line."""
    everything = any(a in ("-F", "--forceall") for a in argv)
    forced, taking = set(), False
    for a in argv:
        if a in ("-R", "--forcerun"):
            taking = True
        elif a.startswith("--forcerun="):
            forced.add(a.split("=", 1)[1])
        elif a.startswith("-"):
            taking = False
        elif taking:
            forced.add(a)
    return everything, {os.path.normpath(f) for f in forced}


def startup_check(roots: Iterable[str | Path], argv: list[str]) -> tuple[str | None, str | None]:
    """(error, warning) for the workflow's start: broken model folders are an error unless their model.json is
    forced to rebuild (`--forcerun <model.json>`); folders of weights without a model.json are a warning."""
    broken, orphaned = scan_models(roots)
    everything, forced = forced_by(argv)
    broken = [b for b in broken if not everything and os.path.normpath(b.split(": ", 1)[0]) not in forced]
    error = warning = None
    if broken:
        paths = " ".join(b.split(": ", 1)[0] for b in broken)
        error = (
            "model folders differ from their model.json (Snakemake checks existence and times, not contents, so "
            "they would be used as they are):\n  " + "\n  ".join(broken) + "\nRebuild them (retrains each and "
            f"reruns what depends on it):\n  snakemake --cores N --forcerun {paths}\nor restore the files."
        )
    if orphaned:
        warning = (
            "model folders with weights but no model.json (deleted, or a job killed while saving): a step that "
            "needs one rebuilds it and reruns everything after it; to rebuild now: snakemake --cores N --forcerun "
            + " ".join(f"{o}/model.json" for o in orphaned)
        )
    return error, warning
