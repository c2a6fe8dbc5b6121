"""W&B runs of the whole suite: one project per tier, one local folder, one run per (paper, row, stage).

Every run (training, a model's shared-benchmark evaluation, a paper's tables, the leaderboard, a judge card) goes
through here, so they share:
- the project (config `wandb.project`, "{tier}" filled in by the config loader: one project per tier),
- the folder (config `wandb.dir`, default results/wandb): `wandb sync --yes results/wandb/wandb/offline-run-*`
  uploads everything,
- `group` = the paper (or "base", "leaderboard", "judges"), `job_type` = the stage (STAGES), `name` = the row,
- a deterministic run id from (project, paper, row, stage). The id leaves the settings out on purpose: the
  dashboard shows one run per model and stage, the current one. A rerun (a changed setting, a crashed job) replaces
  it: the local folder of an earlier run with the same id is removed first, so `wandb sync` uploads only the
  current one, and online `resume="allow"` continues the same run instead of adding a second run of that name.
  The settings and their hash are in each run's config (provenance), so what changed stays visible.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STAGES = ("train", "eval", "aggregate", "leaderboard", "judge-card")
MODES = ("offline", "online", "disabled")
DEFAULT_DIR = Path("results/wandb")
ID_MAX = 64  # run ids stay short (folder names, URLs) and use letters, digits, '-', '_' only


@dataclass(frozen=True)
class WandbSettings:
    """Config `wandb` (config/schema.yaml). Scripts get it as --wandb-json; older callers pass only mode/project."""

    mode: str = "disabled"
    project: str = "alignrepro"
    dir: Path = DEFAULT_DIR
    entity: str | None = None  # online: the team or user that owns the project and the reports (None: your default)
    generations: int = 8  # answers per model shown as a Table in its evaluation run

    @classmethod
    def from_dict(cls, cfg: dict[str, Any] | None, default_dir: Path | None = None) -> WandbSettings:
        cfg = dict(cfg or {"mode": "disabled"})
        unknown = set(cfg) - {"mode", "project", "dir", "entity", "generations"}
        if unknown:
            raise ValueError(f"W&B settings: unknown keys {sorted(unknown)} (config key 'wandb', config/schema.yaml)")
        if cfg.get("mode", "disabled") not in MODES:
            raise ValueError(f"W&B settings: mode {cfg['mode']!r} is not one of {list(MODES)} (config 'wandb.mode')")
        d = cfg.get("dir")
        return cls(
            mode=cfg.get("mode", "disabled"),
            project=cfg.get("project", "alignrepro"),
            dir=Path(d) if d else (default_dir or DEFAULT_DIR),
            entity=cfg.get("entity"),
            generations=int(cfg.get("generations", 8)),
        )

    @property
    def enabled(self) -> bool:
        return self.mode != "disabled"

    @property
    def runs_dir(self) -> Path:
        """Where wandb writes the run folders (it adds `wandb/` under `dir`)."""
        return self.dir / "wandb"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "x"


def run_id(project: str, paper: str, row: str, stage: str) -> str:
    """Deterministic, readable and unique: the slug of paper-row-stage plus a hash of all four (two rows whose slugs
    collide, e.g. "cut/cut" and "cut-cut", still get different ids)."""
    if stage not in STAGES:
        raise ValueError(f"W&B run stage {stage!r} is not one of {list(STAGES)}")
    digest = hashlib.sha256("\x1f".join((project, paper, row, stage)).encode()).hexdigest()[:10]
    head = slug(f"{paper}-{row}-{stage}")[: ID_MAX - len(digest) - 1]
    return f"{head}-{digest}"


def local_runs(runs_dir: Path, rid: str | None = None) -> list[Path]:
    """The run folders under runs_dir (offline-run-* and run-*), only those of run id `rid` when given. A folder's id
    is read from its run-<id>.wandb file (folder names get a -1, -2 suffix on a clash; the file name does not)."""
    if not runs_dir.is_dir():
        return []
    found = []
    for folder in sorted(runs_dir.iterdir()):
        if folder.is_symlink() or not folder.is_dir() or not re.match(r"(offline-)?run-\d{8}_\d{6}-", folder.name):
            continue
        ids = [f.name[len("run-") : -len(".wandb")] for f in folder.glob("run-*.wandb")]
        if rid is None or rid in ids:
            found.append(folder)
    return found


def run_ids(runs_dir: Path) -> list[str]:
    """The run id of every local run folder (one entry per folder: a duplicated id shows up twice)."""
    return [f.name[len("run-") : -len(".wandb")] for folder in local_runs(runs_dir) for f in folder.glob("run-*.wandb")]


def clear_stale(settings: WandbSettings, rid: str) -> list[Path]:
    """Remove earlier local folders of run `rid`: a rerun replaces the run instead of leaving a stale duplicate."""
    stale = local_runs(settings.runs_dir, rid)
    for folder in stale:
        shutil.rmtree(folder, ignore_errors=True)
    return stale


def trainer_env(settings: WandbSettings, paper: str, row: str) -> str:
    """For runs that wandb.init itself starts (transformers' WandbCallback): the same project, folder, group,
    job_type and deterministic id, through wandb's environment variables. Returns the run id."""
    rid = run_id(settings.project, paper, row, "train")
    settings.runs_dir.mkdir(parents=True, exist_ok=True)
    clear_stale(settings, rid)
    os.environ.setdefault("WANDB_MODE", settings.mode)
    os.environ.update(
        WANDB_PROJECT=settings.project,
        WANDB_RUN_GROUP=paper,
        WANDB_JOB_TYPE="train",
        WANDB_RUN_ID=rid,
        WANDB_RESUME="allow",
        WANDB_DIR=str(settings.dir),
    )
    if settings.entity:
        os.environ["WANDB_ENTITY"] = settings.entity
    os.environ.setdefault("WANDB_SILENT", "true")
    return rid


def start_run(
    settings: WandbSettings,
    paper: str,
    row: str,
    stage: str,
    config: dict[str, Any] | None = None,
    name: str | None = None,
) -> Any:
    """A W&B run with the shared project/folder/group and a deterministic id (None when W&B is disabled)."""
    if not settings.enabled:
        return None
    import wandb

    rid = run_id(settings.project, paper, row, stage)
    settings.runs_dir.mkdir(parents=True, exist_ok=True)
    clear_stale(settings, rid)
    for var in ("WANDB_RUN_ID", "WANDB_RESUME", "WANDB_JOB_TYPE", "WANDB_RUN_GROUP"):  # a trainer's, not ours
        os.environ.pop(var, None)
    return wandb.init(
        project=settings.project,
        entity=settings.entity,
        dir=str(settings.dir),
        mode=settings.mode,
        id=rid,
        resume="allow",
        group=paper,
        job_type=stage,
        name=name or row,
        config=config or {},
        settings=wandb.Settings(silent=True),
    )


def cell(v: Any) -> Any:
    """A value a W&B Table column holds: lists and dicts as JSON text (a column has one type)."""
    import json

    return json.dumps(v, sort_keys=True) if isinstance(v, list | dict) else v


def table(rows: list[dict[str, Any]]) -> Any:
    """A wandb.Table of dict rows (the union of their keys, in first-seen order; a missing key is None)."""
    import wandb

    columns = list(dict.fromkeys(k for r in rows for k in r))
    return wandb.Table(columns=columns, data=[[cell(r.get(c)) for c in columns] for r in rows])


def tables_artifact(name: str, tables: dict[str, list[dict[str, Any]]], files: Iterable[Path] = (), **meta: Any) -> Any:
    """A `table` artifact holding each table as a wandb.Table and the given result files (small text/plot files)."""
    import wandb

    art = wandb.Artifact(slug(name), type="table", metadata=meta)
    for key, rows in tables.items():
        if rows:
            art.add(table(rows), slug(key))
    for f in files:
        if Path(f).is_file():
            art.add_file(str(f))
    return art


def model_artifact(key: str, model_dir: Path, identity: dict[str, Any] | None = None) -> Any:
    """A `model` artifact that references the model folder (file://, weights not copied). checksum=False: hashing
    multi-GB weights per run would cost minutes; the folder's identity (model.json: name, base, weights hash) is the
    metadata, and a changed identity makes a new artifact version."""
    import wandb

    art = wandb.Artifact(slug(f"model-{key}"), type="model", metadata=identity or {})
    art.add_reference(Path(model_dir).resolve().as_uri(), checksum=False)
    return art


def log_tables(
    settings: WandbSettings,
    paper: str,
    row: str,
    tables: dict[str, list[dict[str, Any]]],
    prov: dict[str, Any],
    stage: str = "aggregate",
    files: Iterable[Path] = (),
    images: dict[str, Path] | None = None,
) -> str | None:
    """A paper's tables (or the leaderboard) as one run: each table as a wandb.Table, each existing image (a plot) as
    a wandb.Image, and a `table` artifact named <paper>-<row> with the tables and `files`. Returns the run id (None
    when W&B is disabled)."""
    run = start_run(settings, paper, row, stage, config={"provenance": prov}, name=f"{paper}: {row}")
    if run is None:
        return None
    import wandb

    for key, rows in tables.items():
        if rows:
            run.log({key: table(rows)})
    for key, path in (images or {}).items():
        if Path(path).is_file():
            run.log({key: wandb.Image(str(path))})
    art = tables_artifact(f"{paper}-{row}", tables, files, tier=prov.get("tier"), config_hash=prov.get("config_hash"))
    run.log_artifact(art)
    rid = run.id
    run.finish()
    return rid
