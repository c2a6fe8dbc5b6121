"""The tier of the last successful run, so that `snakemake --report report.html` needs no `--config tier=...`.

The Snakefile's `onsuccess:` hook records the run's tier in `results/last_run.json`. A report invocation (Snakemake
builds the DAG again and reads the outputs' metadata, it runs no job) takes that tier when the user names none;
`--config tier=...` or a `--configfile` that sets `tier` still wins. Every other invocation (a run, a dry run,
`--report-after-run`) ignores the record, so a run's tier never depends on the run before it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alignrepro.io import atomic_write_json

RECORD = Path("results/last_run.json")  # relative to the workflow's working directory


def record(tier: str, path: Path = RECORD) -> None:
    """Called after the last job of a successful run."""
    atomic_write_json(path, {"tier": tier, "finished_utc": datetime.now(UTC).isoformat(timespec="seconds")})


def recorded_tier(path: Path = RECORD) -> str | None:
    """The recorded tier, or None without a (readable) record."""
    try:
        tier = json.loads(path.read_text(encoding="utf-8")).get("tier")
    except (OSError, ValueError, AttributeError):
        return None
    return tier if isinstance(tier, str) and tier else None


def is_report_only(argv: Sequence[str]) -> bool:
    """`snakemake --report [FILE]` (or `--report=FILE`) without `--report-after-run`: a report of finished outputs."""
    report = any(a == "--report" or a.startswith("--report=") for a in argv)
    return report and "--report-after-run" not in argv


def tier_for_report(argv: Sequence[str], overrides: Mapping[str, Any], path: Path = RECORD) -> str | None:
    """The tier a report invocation should use in place of config/config.yaml's, or None to keep the config's:
    None unless this is a report-only invocation whose --config / --configfile names no tier."""
    if not is_report_only(argv) or "tier" in overrides:
        return None
    return recorded_tier(path)
