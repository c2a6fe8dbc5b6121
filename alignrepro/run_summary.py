"""The final summary after a successful run (the Snakefile's `onsuccess:` hook): for each configured paper whose
summary exists, where its tables are and the summary's first lines; the ranked leaderboard's summary; the claims
table; where the logs and benchmarks (run times) are (Snakemake names its own log right after).

It reads only files that exist (a run of one target has built few of them), never imports a paper's module (a
paper's summary is found among its registered targets, else at results/<paper>/<tier>/tables/summary.md), and
`report` never raises: a failure is one line, and the run stays successful.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

PAPER_LINES = 3  # first non-empty lines of each paper's summary.md
BOARD_LINES = 10  # the leaderboard summary's heading, ranking line and top rows
WIDTH = 120  # longer summary lines are cut to this or the terminal's width (paths are never cut)
MAX_LINES = 40


def flat_paths(targets: Any) -> list[str]:
    """A paper's registered targets (a path, a rule's output list, or lists of them) as a flat list of paths."""
    if targets is None:
        return []
    if isinstance(targets, (str, Path)):
        return [str(targets)]
    if isinstance(targets, Mapping):
        targets = targets.values()
    out: list[str] = []
    for item in targets:
        out += flat_paths(item)
    return out


def paper_summary(root: Path, paper: str, tier: str, targets: Any = None) -> Path | None:
    """The paper's summary file if it exists: a registered target named summary.md (the one in tables/ first),
    else results/<paper>/<tier>/tables/summary.md."""
    named = [p for p in flat_paths(targets) if Path(p).name == "summary.md"]
    named.sort(key=lambda p: Path(p).parent.name != "tables")
    for rel in [*named, f"results/{paper}/{tier}/tables/summary.md"]:
        if (root / rel).is_file():
            return Path(rel)
    return None


def head(path: Path, n: int, width: int = WIDTH) -> list[str]:
    """The first n non-empty lines, Markdown heading marks dropped, each cut to `width` characters."""
    lines = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for raw in f:
            line = raw.rstrip().lstrip("#").strip() if raw.lstrip().startswith("#") else raw.rstrip()
            if not line.strip():
                continue
            lines.append(line if len(line) <= width else line[: width - 1] + "…")
            if len(lines) == n:
                break
    return lines


def folders(root: Path, tier: str, kind: str) -> str | None:
    """Where the `kind` folders (logs, benchmarks) are: results/{a,b}/<tier>/<kind>/ and results/<kind>/."""
    results = root / "results"
    if not results.is_dir():
        return None
    names = sorted(d.name for d in results.iterdir() if (d / tier / kind).is_dir())
    found = []
    if names:
        found.append(f"results/{names[0] if len(names) == 1 else '{' + ','.join(names) + '}'}/{tier}/{kind}/")
    if (results / kind).is_dir():
        found.append(f"results/{kind}/")
    return ", ".join(found) or None


def render(
    root: Path,
    papers: Iterable[str],
    tier: str,
    targets: Mapping[str, Any] | None = None,
    max_lines: int = MAX_LINES,
) -> list[str]:
    """The summary's lines (at most `max_lines`)."""
    root = Path(root)
    width = min(WIDTH, shutil.get_terminal_size((WIDTH, 24)).columns)
    targets = targets or {}
    out = [f"alignrepro: run summary (tier {tier})"]
    for paper in papers:
        summary = paper_summary(root, paper, tier, targets.get(paper))
        if summary is None:
            continue
        out.append(f"  {paper}: tables in {summary.parent}/")
        out += [f"    {line}" for line in head(root / summary, PAPER_LINES, width - 4)]
    board = Path(f"results/evals/{tier}/summary.md")
    if (root / board).is_file():
        out.append(f"  leaderboard: {board}")
        out += [f"    {line}" for line in head(root / board, BOARD_LINES, width - 4)]
    claims = Path(f"results/claims/{tier}/claims.md")
    if (root / claims).is_file():
        out.append(f"  claims and verdicts: {claims}")
    if len(out) == 1:
        out.append("  no paper summary, leaderboard or claims table exists yet")
    footer = []
    for kind, label in (("logs", "logs"), ("benchmarks", "benchmarks (run times)")):
        where = folders(root, tier, kind)
        if where:
            footer.append(f"  {label}: {where}")
    if len(out) + len(footer) > max_lines:
        keep = max(1, max_lines - len(footer) - 1)
        out = [*out[:keep], f"  ... {len(out) - keep} more lines in the files above"]
    return out + footer


def report(
    papers: Iterable[str],
    tier: str,
    targets: Mapping[str, Any] | None = None,
    root: Path | str = ".",
    stream: TextIO | None = None,
) -> bool:
    """Print the summary; on any error print one line instead. Never raises; returns whether it printed one."""
    stream = stream or sys.stdout
    try:
        text = "\n".join(render(Path(root), papers, tier, targets))
        ok = True
    except Exception as e:  # noqa: BLE001 - the run succeeded; a summary that cannot be made must not fail it
        text = f"alignrepro: no run summary ({type(e).__name__}: {e}); the run itself succeeded"
        ok = False
    try:
        print(text, file=stream, flush=True)
    except Exception:  # noqa: BLE001 - a closed stream: nothing left to tell
        return False
    return ok
