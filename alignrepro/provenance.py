"""Provenance recorded in every result file: what code, packages, machine and config made a number."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alignrepro.io import stable_hash

PACKAGES = (
    "alignrepro",
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "alpaca-eval",
    "lm-eval",
    "snakemake",
    "wandb",
    "gguf",
)


def git_commit(repo: str | Path | None = None) -> str:
    cwd = Path(repo) if repo else Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def all_cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    return next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])


def cpu_flags() -> list[str]:
    """The CPU features that decide fp32 vs bf16 speed (recorded with every number)."""
    return sorted(f for f in all_cpu_flags() if f.startswith(("avx", "amx", "fma", "f16c")))


def provenance(*, tier: str, config: dict[str, Any], seed: int | None = None, **extra: Any) -> dict[str, Any]:
    """A provenance block. `extra` carries the step's own facts: model/data hashes, judge id, prompt hash."""
    return {
        "git_commit": git_commit(),
        "packages": package_versions(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_flags": cpu_flags(),
        "tier": tier,
        "config_hash": stable_hash(config),
        "seed": seed,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
    }
