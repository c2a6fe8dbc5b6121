"""`alignrepro <step> [args]`: every workflow step as a command, usable outside Snakemake (e.g. to evaluate any
local model folder or endpoint). `alignrepro --help` lists the steps; `alignrepro <step> --help` their options."""

from __future__ import annotations

import importlib
import sys

STEPS = {
    "prepare-model": ("alignrepro.models", "prepare a base model folder from a registry spec"),
    "generate": ("alignrepro.generation", "generate outputs for a JSONL of prompts (HF or OpenAI-compatible)"),
    "winrate": ("alignrepro.evals.alpacaeval.winrate", "AlpacaEval-style win rate with a pluggable judge"),
    "accuracy": ("alignrepro.evals.verifiable.accuracy", "oracle accuracy on verifiable tasks"),
    "cut-data": ("alignrepro.methods.cut.data_steps", "CUT: pools, judging, ILF refinement prompts"),
    "cut-train": ("alignrepro.methods.cut.train", "CUT: train CUT or a baseline with LoRA"),
    "cut-tables": ("alignrepro.methods.cut.aggregate", "CUT: reported + reproduced tables, plot"),
}


def usage() -> str:
    rows = "\n".join(f"  {name:<14} {help_}" for name, (_, help_) in STEPS.items())
    return f"usage: alignrepro <step> [args]   (alignrepro <step> --help for its options)\n\nsteps:\n{rows}\n"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), end="")
        return
    if argv[0] not in STEPS:
        sys.exit(f"alignrepro: unknown step {argv[0]!r}\n\n{usage()}")
    module = importlib.import_module(STEPS[argv[0]][0])
    sys.argv = [f"alignrepro {argv[0]}", *argv[1:]]
    module.main(argv[1:])


if __name__ == "__main__":
    main()
