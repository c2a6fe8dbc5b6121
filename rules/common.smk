# Included first by the Snakefile: the validated config, the paper registry and the helpers every rule file uses.
import glob
import json
import re
import shlex
import sys

from snakemake.exceptions import WorkflowError

from alignrepro.config import resolve_config
from alignrepro.integrity import startup_check
from alignrepro.judges import named_spec, registry, resolve_spec
from alignrepro.papers import discover
from alignrepro.rows import enabled as enabled_rows
from alignrepro.run_lock import claim as claim_run_lock

PAPERS = discover()  # methods/<paper>/paper.yaml, by name

# Tier preset under the user's values, validated against config/schema.yaml before any job starts.
_resolved = resolve_config(dict(config))
config.clear()
config.update(_resolved)

TIER = config["tier"]
JUDGES = registry(config)  # every judge, critic and feedback model by name (each use checked at start for its role)
PY = sys.executable  # jobs run with the interpreter that runs Snakemake (the project's venv)
if TIER != "full":
    # ci/tiny never touch a hub; full-tier jobs on a cluster may.
    for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(_var, "1")
os.environ.setdefault("WANDB_MODE", config["wandb"]["mode"] if config["wandb"]["mode"] != "disabled" else "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

if workflow.is_main_process:
    # A killed run leaves Snakemake's lock behind: remove it when no live run of this workflow holds it.
    for _lock in claim_run_lock():
        print(f"alignrepro: removed a stale Snakemake lock left by a killed run: {_lock}", file=sys.stderr)
    # Snakemake checks that outputs exist and their times, not their contents: check each model folder against
    # the manifest its model.json records, so a truncated or deleted weight file never passes silently.
    _error, _warning = startup_check(["results/models", *glob.glob(f"results/*/{TIER}")], sys.argv)
    if _warning:
        print(f"alignrepro: warning: {_warning}", file=sys.stderr)
    if _error:
        raise WorkflowError(f"alignrepro: {_error}")

# Filled by each paper's rules: what the default target builds, and how the shared evals find references/judges.
PAPER_TARGETS = {}
EVAL_REFERENCE = {}
EVAL_JUDGE = {}
# Every model the workflow trains, for the shared benchmarks (evals/shared.smk): key "<group>/<name>" ->
# {"dir": model folder, "base": registry base model, "paper": ..., "method": ...}. Base models are added below.
# A model that decodes differently (MoTE's step chains) adds its own generation keys and a note the leaderboard prints.
SHARED_MODELS = {}
# Training seeds of a paper's headline rows (config `seeds`): the run's seed first, so one seed keeps today's paths;
# a paper that trains extra seeds names those models "<row>-seed<s>" and reports mean and CI over seeds.
SEEDS = [config["seed"] + i for i in range(config["seeds"])]


def register_shared_model(key, model_dir, base, paper, method, generation=None, note=None):
    if paper not in config["papers"]:  # a paper left out of `papers` adds nothing to the leaderboard either
        return
    SHARED_MODELS[key] = {"dir": model_dir, "base": base, "paper": paper, "method": method}
    if generation:
        SHARED_MODELS[key]["generation"] = generation
    if note:
        SHARED_MODELS[key]["note"] = note
    base_key = f"base/{base}"
    if base_key not in SHARED_MODELS:  # every trained model's base is on the board too (and is its reference)
        SHARED_MODELS[base_key] = {"dir": f"results/models/{base}", "base": base, "paper": "-", "method": "base"}


def as_json(obj):
    return json.dumps(obj, sort_keys=True)


# Resource classes (config `resources`): each rule names one in one line, `resources: **res("train")`, and an executor
# asks for exactly that (SLURM: mem_mb -> --mem, runtime -> -t minutes, gpu -> --gpus), so a profile lists no rules.
RESOURCE_KEYS = ("mem_mb", "runtime", "gpu")


def res(kind):
    return {key: config["resources"][kind][key] for key in RESOURCE_KEYS}


def res_judge(model_input):
    """A job that asks a judge, critic or feedback model: class infer when its input `model_input` lists a local
    model's files (known only once the judge is resolved, hence per job), else api: an API needs no GPU."""

    def pick(key):
        return lambda wildcards, input: config["resources"]["infer" if input[model_input] else "api"][key]

    return {key: pick(key) for key in RESOURCE_KEYS}
