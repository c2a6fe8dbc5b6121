"""Table helpers shared by every paper's aggregate step and the leaderboard: Markdown and CSV tables, W&B runs
that carry the tables (offline unless configured otherwise), and plot helpers that draw a missing value as missing."""

from __future__ import annotations

import csv
import io
import json
import math
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
    row: str | None = None,
) -> None:
    """A paper's tables as one W&B run (job_type aggregate, group = the paper) and a `table` artifact, in the suite's
    one W&B folder (alignrepro/wandb_runs.py). `row` names the run (default: the table names), so a paper's two
    aggregate steps are two runs and a rerun of one replaces it. `root` is the folder used only when the settings
    name none; `tier` is in `prov`."""
    from alignrepro.wandb_runs import WandbSettings, log_tables

    settings = WandbSettings.from_dict(wandb_cfg, default_dir=root / "wandb")
    log_tables(settings, paper, row or "+".join(tables), tables, {"tier": tier, **prov})


# ------------------------------------------------------------------------------------------------- plot helpers
MISSING_LABEL = "n/a"


def plot_value(v: Any) -> float | None:
    """The number a plot draws for a table cell, or None when the cell is missing (None, NaN, "" or any non-number,
    e.g. a reported-only row or a metric not computed at a tier). Drawing a missing cell as 0 would read as a
    measured zero."""
    if v is None or isinstance(v, bool):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def bars_or_missing(
    ax: Any,
    xs: list[float],
    values: list[Any],
    width: float,
    ci: list[list[float] | None] | None = None,
    **kwargs: Any,
) -> Any:
    """ax.bar of the present values only (one patch each, `ci` [lo, hi] as error bars where given). A missing value
    gets no bar, only an "n/a" label at its slot; a real 0 keeps its bar of height 0 plus a "0" label, so that it is
    not taken for an empty slot. Returns the BarContainer."""
    vals = [plot_value(v) for v in values]
    keep = [i for i, v in enumerate(vals) if v is not None]
    if ci is not None:
        lo_hi = [ci[i] if ci[i] else [vals[i], vals[i]] for i in keep]
        kwargs["yerr"] = [[vals[i] - c[0] for i, c in zip(keep, lo_hi, strict=True)],
                          [c[1] - vals[i] for i, c in zip(keep, lo_hi, strict=True)]]  # fmt: skip
    bars = ax.bar([xs[i] for i in keep], [vals[i] for i in keep], width, **kwargs)
    for x, v in zip(xs, vals, strict=True):
        if v is None or v == 0:
            ax.text(x, 0, MISSING_LABEL if v is None else "0", ha="center", va="bottom", fontsize=6, rotation=90,
                    color="grey" if v is None else "black")  # fmt: skip
    return bars


def line_or_missing(
    ax: Any, xs: list[float], values: list[Any], fmt: str, ci: list[list[float] | None] | None = None, **kwargs: Any
) -> Any:
    """ax.plot with a gap (NaN) at each missing value and an "n/a" label at the axis bottom under it; `ci` [lo, hi]
    becomes a shaded band where given. Returns the Line2D."""
    vals = [plot_value(v) for v in values]
    ys = [math.nan if v is None else v for v in vals]
    (line,) = ax.plot(xs, ys, fmt, **kwargs)
    if ci is not None:
        lo = [c[0] if c and v is not None else math.nan for c, v in zip(ci, vals, strict=True)]
        hi = [c[1] if c and v is not None else math.nan for c, v in zip(ci, vals, strict=True)]
        ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15)
    for x, v in zip(xs, vals, strict=True):
        if v is None:
            ax.text(x, 0.02, MISSING_LABEL, transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=6,
                    color=line.get_color())  # fmt: skip
    return line


HEURISTIC_PLOT_WARNING = "⚠ a HEURISTIC judge (ci tier only) made the judged numbers: they mean nothing"


def judge_footer(fig: Any, judges: list[str], heuristic: bool = False, fontsize: float = 7) -> Any:
    """Names the judge(s) of a plot's judged numbers under the plot and, when one is a heuristic, the warning its
    table carries, so that a plot shown on its own (the report, W&B, the README) says what its table says. `judges`
    are lines as the tables write them (Markdown marks are dropped), e.g. evals/judges/lines.py's card_line. Call it
    before `tight_layout`, which makes room for it (it is the figure's supxlabel). Returns the Text."""
    import textwrap

    plain = [j.replace("`", "").replace("**", "").strip() for j in judges if j]
    text = "; ".join(p if p.lower().startswith("judge") else f"judge {p}" for p in plain) or "no judge"
    width = max(40, int(fig.get_figwidth() * 72 / (fontsize * 0.55)))  # characters that fit the figure's width
    lines = textwrap.wrap(text, width)
    if heuristic and "mean nothing" not in text:  # card lines of a heuristic judge carry the warning already
        lines.append(HEURISTIC_PLOT_WARNING)
    return fig.supxlabel("\n".join(lines), fontsize=fontsize, color="firebrick" if heuristic else "dimgrey",
                         fontweight="bold" if heuristic else "normal")  # fmt: skip
