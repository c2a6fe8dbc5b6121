"""Table helpers shared by every paper's aggregate step and the leaderboard: Markdown and CSV tables, and W&B runs
that carry the tables (offline unless configured otherwise)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    for r in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in r.items()})
    return buf.getvalue()


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if c is None else str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def log_to_wandb(
    wandb_cfg: dict[str, Any],
    root: Path,
    tier: str,
    tables: dict[str, list[dict]],
    prov: dict,
    paper: str = "cut",
) -> None:
    """Each evaluation logs its tables as a W&B run of its own (offline unless configured otherwise)."""
    if wandb_cfg["mode"] == "disabled":
        return
    import pandas as pd
    import wandb

    (root / "wandb").mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=wandb_cfg["project"],
        group=f"{paper}-{tier}",
        name=f"{paper}-{tier}-tables",
        job_type="eval",
        dir=str(root / "wandb"),
        mode=wandb_cfg["mode"],
        config={"provenance": prov},
    )
    for name, rows in tables.items():
        frame = pd.DataFrame(
            [{k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in r.items()} for r in rows]
        )
        run.log({name: wandb.Table(dataframe=frame)})
    run.finish()
