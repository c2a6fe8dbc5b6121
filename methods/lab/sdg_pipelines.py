"""Per-tier copies of instructlab-sdg's own pipeline YAMLs (`full/freeform_skills.yaml`, `full/grounded_skills.yaml`,
`full/knowledge.yaml`, `eval/mmlu_bench.yaml`), written to the run's folder and hashed for provenance.

A copy differs from the library's only in sampling temperature, max_tokens and counts (`n`, `num_samples`): every
block, its type, prompt config, parser and every filter (column, value, operation, dtype) stay as they are, in order;
`check_derived` enforces that on every load. The library's blocks default to temperature 0 and max_tokens 4096 (only
gen_contexts samples, T 0.7, n 10); greedy question generation just copies the seed examples, so question and context
generation must sample (T≈0.7) at every tier. Prompt configs stay in the unpacked wheel: the copy keeps the library's
relative `config_path`s and runs with the library's YAML as its base path (the wheel's sha256 pins them).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from alignrepro.errors import UserError
from alignrepro.io import atomic_write_json, atomic_write_text, read_json, sha256_file
from alignrepro.methods.lab import sdg_formats, sdg_shim

LIBRARY_PIPELINES = {
    "freeform_skills": "full/freeform_skills.yaml",
    "grounded_skills": "full/grounded_skills.yaml",
    "knowledge": "full/knowledge.yaml",
    "mmlu_bench": "eval/mmlu_bench.yaml",
}
KIND_PIPELINE = {"freeform_skill": "freeform_skills", "grounded_skill": "grounded_skills", "knowledge": "knowledge"}
GEN_KWARGS = ("temperature", "max_tokens", "n", "extra_body")
BATCH_KWARGS = ("num_samples",)
MANIFEST = "pipelines.json"


@dataclass(frozen=True)
class DerivedPipeline:
    name: str  # freeform_skills | grounded_skills | knowledge | mmlu_bench
    path: Path  # the derived YAML in the run folder
    sha256: str
    library_path: Path  # the library's YAML: the relative config paths resolve against it
    blocks: list[dict[str, Any]]
    overrides: dict[str, dict[str, Any]]


def library_pipeline(name: str) -> tuple[Path, dict[str, Any]]:
    if name not in LIBRARY_PIPELINES:
        raise UserError(f"unknown SDG pipeline {name!r}; expected one of {sorted(LIBRARY_PIPELINES)}")
    path = sdg_shim.pipelines_dir() / LIBRARY_PIPELINES[name]
    return path, yaml.safe_load(path.read_text(encoding="utf-8"))


def _check_value(where: str, key: str, value: Any) -> Any:
    if key == "extra_body":  # only guided decoding (vLLM's field) travels in the request body
        if not isinstance(value, dict) or set(value) != {"guided_regex"} or not isinstance(value["guided_regex"], str):
            raise UserError(f"{where}: extra_body must be {{guided_regex: <regex>}}, got {value!r}")
        return value
    if key == "temperature":
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise UserError(f"{where}: temperature must be a number >= 0, got {value!r}")
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{where}: {key} must be an integer >= 1, got {value!r}")
    return value


def derive(name: str, content: dict[str, Any], overrides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The library pipeline `content` with per-block overrides {block name: {temperature|max_tokens|n|num_samples}}."""
    out = copy.deepcopy(content)
    blocks = {b["name"]: b for b in out["blocks"]}
    for block_name, settings in overrides.items():
        where = f"SDG pipeline {name}, block {block_name}"
        if block_name not in blocks:
            raise UserError(f"{where}: no such block (blocks: {list(blocks)})")
        block = blocks[block_name]
        if block["type"] not in ("LLMBlock", "ConditionalLLMBlock"):
            raise UserError(f"{where}: a {block['type']} has no sampling settings to override")
        for key, value in settings.items():
            if key not in GEN_KWARGS + BATCH_KWARGS:
                raise UserError(f"{where}: {key!r} cannot be overridden (only {GEN_KWARGS + BATCH_KWARGS})")
            value = _check_value(where, key, value)
            cfg = block["config"]
            if key in GEN_KWARGS:
                cfg.setdefault("gen_kwargs", {})[key] = value
            elif "num_samples" not in cfg.get("batch_kwargs", {}):
                raise UserError(f"{where}: num_samples is used only by blocks whose prompt asks for a count")
            else:
                cfg["batch_kwargs"]["num_samples"] = value
    return out


def skeleton(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The blocks without the overridable settings: what a derived pipeline must share with the library's."""
    out = copy.deepcopy(blocks)
    for block in out:
        cfg = block.get("config", {})
        for section, keys in (("gen_kwargs", GEN_KWARGS), ("batch_kwargs", BATCH_KWARGS)):
            for key in keys:
                cfg.get(section, {}).pop(key, None)
            if section in cfg and not cfg[section]:
                del cfg[section]
    return out


def check_derived(name: str, original: dict[str, Any], derived: dict[str, Any]) -> None:
    """Raise unless `derived` keeps every block (name, type, config, filters, drops) of `original`, in order."""
    if [b["name"] for b in derived["blocks"]] != [b["name"] for b in original["blocks"]]:
        raise UserError(
            f"SDG pipeline {name}: blocks differ from the library's {[b['name'] for b in original['blocks']]}"
        )
    for ours, theirs in zip(skeleton(derived["blocks"]), skeleton(original["blocks"]), strict=True):
        if ours != theirs:
            raise UserError(
                f"SDG pipeline {name}: block {ours['name']} differs from the library's beyond the overrides"
            )
    rest = {k: v for k, v in derived.items() if k != "blocks"}
    if rest != {k: v for k, v in original.items() if k != "blocks"}:
        raise UserError(f"SDG pipeline {name}: top-level keys differ from the library's")


def _header(name: str, source: Path, overrides: dict[str, Any]) -> str:
    lib = f"instructlab-sdg {sdg_shim.SDG_WHEEL[1]} (wheel sha256 {sdg_shim.SDG_WHEEL[2]})"
    return (
        f"# Derived from {lib} pipelines/{LIBRARY_PIPELINES[name]} (sha256 {sha256_file(source)})\n"
        f"# by methods/lab/sdg_pipelines.py; overrides: {json.dumps(overrides, sort_keys=True)}\n"
    )


def write_pipelines(out_dir: str | Path, overrides: dict[str, dict[str, dict[str, Any]]]) -> dict[str, DerivedPipeline]:
    """Write every derived pipeline (<name>.yaml) and pipelines.json (hashes, sources, overrides) into out_dir."""
    unknown = set(overrides) - set(LIBRARY_PIPELINES)
    if unknown:
        raise UserError(f"SDG overrides name unknown pipelines {sorted(unknown)}; expected {sorted(LIBRARY_PIPELINES)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "library": {
            "package": "instructlab-sdg",
            "version": sdg_shim.SDG_WHEEL[1],
            "wheel_sha256": sdg_shim.SDG_WHEEL[2],
        },
        "pipelines": {},
    }
    for name in LIBRARY_PIPELINES:
        source, content = library_pipeline(name)
        ours = overrides.get(name, {})
        derived = derive(name, content, ours)
        check_derived(name, content, derived)
        path = out_dir / f"{name}.yaml"
        text = yaml.safe_dump(derived, sort_keys=False, allow_unicode=True, width=120)
        atomic_write_text(path, _header(name, source, ours) + text)
        manifest["pipelines"][name] = {
            "source": f"instructlab/sdg/pipelines/{LIBRARY_PIPELINES[name]}",
            "source_sha256": sha256_file(source),
            "path": path.name,
            "sha256": sha256_file(path),
            "overrides": ours,
        }
    atomic_write_json(out_dir / MANIFEST, manifest)
    return load_pipelines(out_dir)


def load_pipelines(out_dir: str | Path) -> dict[str, DerivedPipeline]:
    """The derived pipelines of a run folder, each checked against its recorded hash and the library's blocks."""
    out_dir = Path(out_dir)
    if not (out_dir / MANIFEST).is_file():
        raise UserError(f"{out_dir / MANIFEST} is missing: write the pipelines first (write_pipelines)")
    manifest = read_json(out_dir / MANIFEST)
    found = {}
    for name, entry in manifest["pipelines"].items():
        path = out_dir / entry["path"]
        if not path.is_file() or sha256_file(path) != entry["sha256"]:
            raise UserError(f"{path}: missing or changed since it was written (sha256 recorded in {MANIFEST})")
        source, original = library_pipeline(name)
        derived = yaml.safe_load(path.read_text(encoding="utf-8"))
        check_derived(name, original, derived)
        found[name] = DerivedPipeline(name, path, entry["sha256"], source, derived["blocks"], entry["overrides"])
    return found


def tier_overrides(
    questions_per_seed: int,
    contexts_per_seed: int,
    questions_per_context: int,
    temperature: float = 0.7,
    max_tokens: int | None = None,
    block_max_tokens: dict[str, int] | None = None,
    guided: bool = False,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Overrides for a tier: the counts (library: 30 questions per seed; 10 contexts per seed × 3 questions each),
    sampling for question and context generation (judges and answers stay greedy, as in the library), an optional
    max_tokens cap on every LLM block (`block_max_tokens` per block name wins) and, with `guided`, each block's
    output format as a guided-decoding regex (sdg_formats)."""
    out: dict[str, dict[str, dict[str, Any]]] = {
        "freeform_skills": {"gen_questions": {"num_samples": questions_per_seed, "temperature": temperature}},
        "grounded_skills": {
            "gen_contexts": {"n": contexts_per_seed, "temperature": temperature},
            "gen_grounded_questions": {"num_samples": questions_per_context, "temperature": temperature},
        },
        "knowledge": {},
        "mmlu_bench": {},
    }
    seen = set()
    for name in LIBRARY_PIPELINES:
        path, content = library_pipeline(name)
        for i, block in enumerate(content["blocks"]):
            seen.add(block["name"])
            if block["type"] != "LLMBlock":
                continue
            cap = (block_max_tokens or {}).get(block["name"], max_tokens)
            if cap is not None:
                out[name].setdefault(block["name"], {})["max_tokens"] = cap
            if guided and (regex := sdg_formats.block_regex(content["blocks"], i, path, name)) is not None:
                out[name].setdefault(block["name"], {})["extra_body"] = {"guided_regex": regex}
    if set(block_max_tokens or {}) - seen:
        raise UserError(f"block_max_tokens names unknown SDG blocks {sorted(set(block_max_tokens) - seen)}")
    return out
