"""Running the workflow from tests: Snakemake on the repo's Snakefile in a scratch working directory."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def smk_cmd(workdir: Path, *args: str) -> list[str]:
    # --nocolor: Snakemake's plain log even under a terminal (profiles/default turns the rich logger on only at a
    # terminal, and it prints job stats and "Nothing to be done" in its own format: job_stats parses the plain one)
    snakefile = str(REPO / "Snakefile")
    return [str(SNAKEMAKE), "-s", snakefile, "--directory", str(workdir), "--cores", "2", "--nocolor", *args]


def smk(workdir: Path, *args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    return subprocess.run(smk_cmd(workdir, *args), capture_output=True, text=True, timeout=timeout)


def job_stats(output: str) -> dict[str, int]:
    """Snakemake's "Job stats:" table as {rule: count} (without the total)."""
    block = output.split("Job stats:", 1)[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M) if m.group(1) != "total"}
