#!/usr/bin/env bash
# Set up the project's environment in .venv (idempotent; a second run only checks).
# torch first, as the CPU build this machine kind keeps on disk (any other torch spec pulls a multi-GB CUDA build);
# then the project with every dependency pinned by envs/constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.alignrepro-setup
want=$(cat pyproject.toml envs/constraints.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "envs/setup.sh: .venv is up to date"
  exit 0
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -c envs/constraints.txt -e ".[test]"
echo "$want" > "$stamp"
echo "envs/setup.sh: .venv ready ($(.venv/bin/python -c 'import torch, trl, transformers; print("torch", torch.__version__, "trl", trl.__version__, "transformers", transformers.__version__)'))"
