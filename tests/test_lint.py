"""The style bar from the brief: the tree is ruff clean (lint and format)."""

import re
import subprocess
import sys
from pathlib import Path

from alignrepro.papers import discover

REPO = Path(__file__).resolve().parents[1]
RUFF = Path(sys.executable).parent / "ruff"


def test_ruff_check_and_format_are_clean():
    check = subprocess.run([str(RUFF), "check", "."], cwd=REPO, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout[-3000:]
    fmt = subprocess.run([str(RUFF), "format", "--check", "."], cwd=REPO, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout[-3000:]


# Snakemake records a shell rule's *unformatted* command for its rerun trigger, so a config value reaching the
# command through a global (`{MT_TRAIN:q}`) is invisible to it: changing it would not rerun the job. Config goes
# through `params:`; the shell may name only these globals (interpreter, tier, path roots, W&B mode, code lists).
# Each paper names its own in its manifest (`shell_globals`).
SHELL_GLOBALS = {"PY", "TIER", "EV_R"} | {g for p in discover().values() for g in p.shell_globals}
RULE_NAMESPACES = {"input", "output", "params", "log", "wildcards", "threads", "resources"}


def _shell_names(text: str) -> list[tuple[int, str]]:
    found, in_shell = [], False
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if s.startswith("shell:"):
            in_shell = True
            continue
        if in_shell and not s.startswith(('"', 'f"')):
            in_shell = False
        if in_shell:
            found += [(n, name) for name in re.findall(r"(?<!\{)\{([A-Za-z_]\w*)", s)]
    return found


def test_shell_commands_take_config_through_params_only():
    files = sorted(REPO.glob("**/*.smk")) + [REPO / "Snakefile"]
    files = [f for f in files if ".venv" not in f.parts]
    assert len(files) >= 6
    bad = [
        f"{f.relative_to(REPO)}:{n}: {{{name}}}"
        for f in files
        for n, name in _shell_names(f.read_text())
        if name not in SHELL_GLOBALS | RULE_NAMESPACES
    ]
    assert not bad, "config values in shell strings (move them to params:):\n" + "\n".join(bad)
    assert _shell_names('    shell:\n        "x --cfg {MT_TRAIN:q} {params.a}"\n') == [(2, "MT_TRAIN"), (2, "params")]
