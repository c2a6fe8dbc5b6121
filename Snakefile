# alignrepro main workflow: `snakemake --cores N` regenerates every paper's tables at the configured tier.
# Data flows data → train → generate → judge → aggregate; each step is a rule with declared inputs and outputs.
# Papers are found from their folders (methods/<paper>/paper.yaml): adding one edits nothing here.
import os
import sys

from alignrepro.config import check_config_files

# Snakemake's own YAML loader names no file in its errors and lets a duplicate key win silently: read the user's
# config files strictly first (a --configfile that is not YAML at all already failed in Snakemake's CLI).
check_config_files([os.path.join(workflow.basedir, "config/config.yaml"), *workflow.overwrite_configfiles])


configfile: os.path.join(workflow.basedir, "config/config.yaml")


# `snakemake --report report.html` reports the tier of the last successful run (recorded by `onsuccess:` below)
# unless --config/--configfile names one; a run, a dry run or --report-after-run never reads the record.
from alignrepro import last_run

_report_tier = last_run.tier_for_report(sys.argv, workflow.config_settings.overwrite_config)
if _report_tier:
    config["tier"] = _report_tier


include: "rules/common.smk"  # first: the validated config, the paper registry, helpers (includes stay one-way)
include: "rules/models.smk"


for _paper in PAPERS.values():  # every paper under methods/, in name order; `papers:` picks the default target

    include: str(_paper.rules)


include: "evals/verifiable/rules.smk"
include: "evals/alpacaeval/rules.smk"
include: "evals/shared.smk"  # after the papers: it reads SHARED_MODELS
include: "evals/wandb.smk"  # after shared.smk: it logs the leaderboard rule's inputs
include: "rules/claims.smk"  # after the papers: it reads PAPER_TARGETS


rule all:
    default_target: True
    input:
        [PAPER_TARGETS[p] for p in config["papers"]],
        rules.evals_leaderboard.output if config["evals"]["shared"] else [],
        rules.evals_fastchat.output if config["evals"]["shared"] else [],  # FastChat's data/ layout (MT-Bench)
        rules.evals_wandb.output if config["evals"]["shared"] and config["wandb"]["mode"] != "disabled" else [],
        rules.claims_all.output,


report: "report/workflow.rst"  # the report's front page; each item's caption is a report/*.rst beside its rules


onsuccess:
    # After the last job of a successful run: each paper's tables and summary, the leaderboard, the claims table and
    # where the logs are (alignrepro/run_summary.py: reads only files that exist, never fails the run).
    last_run.record(TIER)  # what a later `snakemake --report` reports (alignrepro/last_run.py)
    try:
        from alignrepro import run_summary

        run_summary.report(config["papers"], TIER, PAPER_TARGETS)
    except Exception as _e:  # noqa: BLE001
        print(f"alignrepro: no run summary ({type(_e).__name__}: {_e}); the run itself succeeded")
