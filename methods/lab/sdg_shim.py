"""InstructLab's SDG library (instructlab-sdg 0.8.3) and taxonomy schema (instructlab-schema 0.4.2), imported from
their pinned wheels without installing them.

instructlab-sdg declares openai<2 (this stack runs openai 3) and its package `__init__` imports generate_data →
utils.taxonomy → utils.chunkers → docling (OCR, not installed). So the wheels are unpacked once into a cache folder
and the package modules `instructlab` / `instructlab.sdg` are registered in sys.modules as empty packages whose
`__path__` points there: importing `instructlab.sdg.pipeline` then runs only that module and what it imports, never
the `__init__` chain. `instructlab.sdg.utils.chunkers` (docling) is replaced by a stub, so the library's own
`utils.taxonomy` helpers (leaf → pipeline samples) stay usable; documents are chunked by methods/lab/sdg.py.

Settings this stack needs (verified by running the pipelines): a ChatML prompt family ("chatml": SmolLM2, Qwen2.5
and the ci random model), `client.server_supports_batched = True` (skips the library's probe request, which builds an
httpx response type openai 3 does not accept), `dataset_num_procs=1` (no worker processes on a 2-core box).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import types
import zipfile
from functools import cache
from pathlib import Path
from typing import Any

from alignrepro.data.packages import WHEEL_CACHE, download_wheel
from alignrepro.errors import UserError

log = logging.getLogger(__name__)

# (name, version, sha256 of the wheel)
SDG_WHEEL = ("instructlab-sdg", "0.8.3", "a0a1df2c8b47a9929e27750ccbe1c908dd5755ac9fbefce2027080df2e13b146")
SCHEMA_WHEEL = ("instructlab-schema", "0.4.2", "6668500698c4e60439e13014cbb0556189cfa5d310f3f3ad79daa1736cb8a988")
SDG_SDIST_SHA256 = "6c5d038f87f55892450775e3b58e6b9425fad952d1b8244252e094173cdabf0b"  # holds phoenix.md
UNPACKED = Path(os.environ.get("ALIGNREPRO_UNPACKED_CACHE", WHEEL_CACHE.parent / "unpacked"))
CHATML_FAMILY = "chatml"

# Substrings of a teacher's model id -> the library's prompt family (the chat template wrapping every SDG prompt).
FAMILIES = (
    ("mixtral", "mixtral"),
    ("mistral", "mixtral"),
    ("merlinite", "merlinite"),
    ("granite", "granite"),
    ("llama-3", "llama"),
    ("smollm", CHATML_FAMILY),
    ("qwen", CHATML_FAMILY),
    ("ci-random", CHATML_FAMILY),
)


def unpack_wheel(name: str, version: str, sha256: str) -> Path:
    """The pinned wheel (hash checked by download_wheel) unpacked into UNPACKED/<wheel stem>. Extracted into a
    temporary folder and renamed into place: a racing job either wins the rename or discards its identical copy."""
    wheel = download_wheel(name, version, sha256)
    dest = UNPACKED / wheel.stem
    if dest.is_dir():
        return dest
    UNPACKED.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{wheel.stem}-", dir=UNPACKED))
    try:
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _package(name: str, path: Path) -> types.ModuleType:
    """Register (or extend) an empty package module `name` whose submodules are found under `path`."""
    mod = sys.modules.get(name)
    if mod is None:
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = []
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, mod)
    if str(path) not in list(mod.__path__):
        mod.__path__.append(str(path))
    return mod


@cache
def schema_module() -> types.ModuleType:
    """`instructlab.schema.taxonomy` (TaxonomyParser) from the pinned instructlab-schema wheel."""
    root = unpack_wheel(*SCHEMA_WHEEL)
    _package("instructlab", root / "instructlab")
    return importlib.import_module("instructlab.schema.taxonomy")


class _NoDocling:
    """Stands in for utils.chunkers.DocumentChunker (docling): documents are chunked by methods/lab/sdg.py."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise UserError("docling is not used here: knowledge documents are chunked by methods/lab/sdg.chunk_words")


@cache
def sdg() -> types.SimpleNamespace:
    """The library's modules and classes, imported without instructlab/sdg/__init__.py (see the module docstring)."""
    schema_module()  # utils.taxonomy imports instructlab.schema
    root = unpack_wheel(*SDG_WHEEL)
    _package("instructlab", root / "instructlab")
    _package("instructlab.sdg", root / "instructlab" / "sdg")
    utils = importlib.import_module("instructlab.sdg.utils")
    if "instructlab.sdg.utils.chunkers" not in sys.modules:
        stub = types.ModuleType("instructlab.sdg.utils.chunkers")
        stub.DocumentChunker = _NoDocling
        sys.modules[stub.__name__] = stub
        utils.chunkers = stub
    mods = {
        m: importlib.import_module(f"instructlab.sdg.{m}")
        for m in ("pipeline", "registry", "prompts", "datamixing", "eval_data", "utils.taxonomy")
    }
    blocks = {
        m: importlib.import_module(f"instructlab.sdg.blocks.{m}")
        for m in ("llmblock", "filterblock", "utilblocks", "iterblock")
    }
    registry = mods["registry"]
    if CHATML_FAMILY not in registry.PromptRegistry.get_registry():
        from alignrepro.models import CHATML_TEMPLATE  # the ci model's template; SmolLM2 and Qwen2.5 use ChatML too

        registry.PromptRegistry.register(CHATML_FAMILY)(lambda: CHATML_TEMPLATE)
    pipeline = mods["pipeline"]
    return types.SimpleNamespace(
        root=root / "instructlab" / "sdg",
        Pipeline=pipeline.Pipeline,
        PipelineContext=pipeline.PipelineContext,
        PipelineBlockError=pipeline.PipelineBlockError,
        BlockRegistry=registry.BlockRegistry,
        PromptRegistry=registry.PromptRegistry,
        LLMBlock=blocks["llmblock"].LLMBlock,
        FilterByValueBlock=blocks["filterblock"].FilterByValueBlock,
        DEFAULT_MAX_NUM_TOKENS=blocks["llmblock"].DEFAULT_MAX_NUM_TOKENS,
        taxonomy=mods["utils.taxonomy"],
        datamixing=mods["datamixing"],
        eval_data=mods["eval_data"],
        version=SDG_WHEEL[1],
        wheel_sha256=SDG_WHEEL[2],
    )


def pipelines_dir() -> Path:
    """The library's pipeline YAMLs (full/, simple/, llama/, eval/); their config paths are relative to them."""
    return sdg().root / "pipelines"


def model_family(model_id: str) -> str:
    """The library's prompt family for a teacher, from its model id (raises for an unknown one)."""
    name = model_id.lower()
    for key, family in FAMILIES:
        if key in name:
            return family
    raise UserError(f"teacher {model_id!r}: unknown prompt family; pass model_family (one of {sorted(families())})")


def families() -> list[str]:
    return sorted(sdg().PromptRegistry.get_registry())


def make_context(
    client: Any, model_id: str, model_family_name: str | None = None, batch_size: int = 8, **kwargs: Any
) -> Any:
    """A PipelineContext with the settings this stack needs (module docstring)."""
    lib = sdg()
    family = model_family_name or model_family(model_id)
    if family not in lib.PromptRegistry.get_registry():
        raise UserError(f"model_family {family!r} is not a registered prompt family: {families()}")
    client.server_supports_batched = True
    kwargs.setdefault("dataset_num_procs", 1)
    return lib.PipelineContext(client=client, model_family=family, model_id=model_id, batch_size=batch_size, **kwargs)
