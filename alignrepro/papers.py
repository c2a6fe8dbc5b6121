"""Papers are discovered from their folders, the lm-evaluation-harness way: `methods/<paper>/paper.yaml` declares
everything the engine needs from a paper, so adding a paper edits nothing outside its folder.

A manifest (methods/<paper>/paper.yaml):

    name: cut                              # = the folder name = the paper's config key
    title: "Reasons to Reject? …"
    arxiv: "2312.14591"
    rules: rules.smk                       # its Snakemake rules (included by the Snakefile)
    references:                            # config paths that name models / judges, checked at start
      models: [online_base, "bases[]"]
      judges: {"eval.judge.*": judge, "critic.*": critic}   # evals.judges names -> the role ($defs) each plays
    training_seeds: [train]                # config paths whose `seed` defaults to the run's top-level seed
    shell_globals: [CUT_R, CUT_WANDB]      # globals its shell commands may name (paths; config goes via params:)
    config: config.yaml                    # {defaults: {...}, tiers: {ci: {...}, ...}, models: {full: {...}}}
    schema: schema.yaml                    # JSON schema of config[<paper>] ($defs of config/schema.yaml usable)
    steps:                                 # `alignrepro <step>` commands
      cut-train: {module: alignrepro.methods.cut.train, help: "train CUT or a baseline with LoRA"}
    model_kinds:                           # model.json kinds this paper writes, for the shared layer
      mote: {backend: "alignrepro.methods.mote.backend:MoteBackend", scoring: "…:scoring_model"}

Nothing here imports a paper: entries are "module:object" strings, imported on first use (`load_object`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from alignrepro.errors import UserError

METHODS_DIR = Path(__file__).resolve().parents[1] / "methods"
MANIFEST = "paper.yaml"
_KEYS = {
    "name",
    "title",
    "arxiv",
    "rules",
    "config",
    "schema",
    "steps",
    "model_kinds",
    "references",
    "training_seeds",
    "shell_globals",
    "rows",
    "row_schema",
    "row_refs",
    "row_lists",
}


@dataclass(frozen=True)
class Paper:
    name: str
    title: str
    arxiv: str
    folder: Path
    rules: Path
    config: Path
    schema: Path
    steps: dict[str, dict[str, str]] = field(default_factory=dict)
    model_kinds: dict[str, dict[str, str]] = field(default_factory=dict)
    references: dict[str, Any] = field(default_factory=dict)  # config paths naming models/judges (checked at start)
    training_seeds: tuple[str, ...] = ()  # config paths whose `seed` defaults to the run's
    shell_globals: tuple[str, ...] = ()  # rules.smk globals its shell commands may name (paths, never config)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # method rows (alignrepro.rows)
    row_schema: dict[str, Any] = field(default_factory=dict)  # JSON schema of a row's own fields
    row_refs: tuple[str, ...] = ()  # row fields that name code ("module:object" or "file.py:object")
    # config keys (in the paper's section) whose items name rows: a list (rows without `table`) or {key: table}
    row_lists: dict[str, str | None] = field(default_factory=dict)

    def config_tree(self) -> dict[str, Any]:
        return _yaml(self.config)

    def defaults(self) -> dict[str, Any]:
        return self.config_tree().get("defaults") or {}

    def tier(self, tier: str) -> dict[str, Any]:
        return (self.config_tree().get("tiers") or {}).get(tier) or {}

    def models(self, tier: str) -> dict[str, Any]:
        """Registry models the paper adds at `tier` (config.yaml `models.<tier>`), e.g. a base no other paper uses."""
        return (self.config_tree().get("models") or {}).get(tier) or {}

    def schema_fragment(self) -> dict[str, Any]:
        return _yaml(self.schema)


def _yaml(path: Path) -> dict[str, Any]:
    from alignrepro.config import load_yaml  # strict loader: duplicate keys are errors, naming the file

    return load_yaml(path)


def _read(folder: Path) -> Paper:
    path = folder / MANIFEST
    data = _yaml(path)
    unknown = set(data) - _KEYS
    if unknown:
        raise UserError(f"{path}: unknown keys {sorted(unknown)} (a manifest has {sorted(_KEYS)})")
    for key in ("name", "title", "arxiv", "rules", "config", "schema"):
        if key not in data:
            raise UserError(f"{path}: missing {key!r}")
    refs = data.get("references") or {}
    if set(refs) - {"models", "judges"}:
        raise UserError(
            f"{path}: references takes `models` and `judges`, not {sorted(set(refs) - {'models', 'judges'})} "
            "(a judge, critic or feedback model is an evals.judges entry named by `judges: {path: role}`)"
        )
    if data["name"] != folder.name:
        raise UserError(f"{path}: name {data['name']!r} must be the folder's name {folder.name!r}")
    files = {k: folder / data[k] for k in ("rules", "config", "schema")}
    for key, file in files.items():
        if not file.is_file():
            raise UserError(f"{path}: {key} file {file} does not exist")
    return Paper(
        name=data["name"],
        title=data["title"],
        arxiv=str(data["arxiv"]),
        folder=folder,
        steps=data.get("steps") or {},
        model_kinds=data.get("model_kinds") or {},
        references=data.get("references") or {},
        training_seeds=tuple(data.get("training_seeds") or ()),
        shell_globals=tuple(data.get("shell_globals") or ()),
        rows=data.get("rows") or {},
        row_schema=data.get("row_schema") or {},
        row_refs=tuple(data.get("row_refs") or ()),
        row_lists=_row_lists(data.get("row_lists")),
        **files,
    )


def _row_lists(value: Any) -> dict[str, str | None]:
    return dict(value) if isinstance(value, dict) else dict.fromkeys(value or ())


@cache
def discover(root: Path = METHODS_DIR) -> dict[str, Paper]:
    """Every paper under methods/, by name (sorted): a folder with a paper.yaml."""
    return {p.parent.name: _read(p.parent) for p in sorted(Path(root).glob(f"*/{MANIFEST}"))}


def paper(name: str) -> Paper:
    papers = discover()
    if name not in papers:
        raise UserError(f"unknown paper {name!r}. Available: {', '.join(papers)}")
    return papers[name]


def load_object(ref: str) -> Any:
    """Import "package.module:object" (lazily: only the entry used is imported)."""
    module, _, obj = ref.partition(":")
    try:
        return getattr(importlib.import_module(module), obj) if obj else importlib.import_module(module)
    except (ImportError, AttributeError) as e:
        raise UserError(f"cannot load {ref!r} ({e})") from e


def model_kind_entry(kind: str, role: str) -> Any | None:
    """The object a paper registered for model.json kind `kind` and `role` ("backend", "scoring"), or None when no
    paper registers that kind (a plain base or LoRA model)."""
    for p in discover().values():
        entry = p.model_kinds.get(kind)
        if entry is not None:
            if role not in entry:
                return None
            return load_object(entry[role])
    return None
