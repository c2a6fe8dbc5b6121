"""Every rule names a resource class (config `resources`, rules/common.smk `res`), so a cluster gives a GPU only to
the jobs that train or run a local model, and the SLURM profile needs no per-rule list."""

from __future__ import annotations

import os
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from snakemake_executor_plugin_slurm.submit_string import get_submit_command
from snakemake_executor_plugin_slurm.utils import set_gres_string
from workflow import REPO, smk

from alignrepro.config import resolve_config
from alignrepro.papers import discover

# The full tier's class of every rule of its DAG (`all` runs nothing and asks for nothing).
FULL_CLASSES = {
    name: set(rules.split())
    for name, rules in {
        "train": "cut_train morlaif_pm morlaif_ppo mote_train mote_train_baseline",
        "infer": "cut_respond cut_refine cut_generate morlaif_pm_scores morlaif_respond mote_chains mote_baseline_data "
        "mote_infer mote_infer_fig6 mote_generate_baseline mote_prompting evals_respond evals_lmeval",
        # the full tier's judges, critics and feedback models are all APIs
        "api": "cut_judge morlaif_feedback_shard morlaif_feedback morlaif_figure_c_data morlaif_figure_e_data "
        "mote_evaluate eval_winrate evals_alpacaeval evals_mtbench evals_safety judge_card",
        "cpu": "cut_pool cut_shepherd cut_refine_prompts cut_reference cut_tables morlaif_stage morlaif_data "
        "morlaif_analysis morlaif_tables morlaif_figure_e mote_jailbreak_prompts mote_queries mote_eval_prompts "
        "mote_self_bleu mote_tables mote_ablations evals_alpacaeval_prompts evals_safety_prompts evals_leaderboard "
        "eval_accuracy",
        "cpu_model": "base_model mote_efficiency",
    }.items()
}
ACTIONS = ("shell:", "run:", "script:", "notebook:", "wrapper:")


def rule_files() -> list[Path]:
    files = [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk")), *sorted((REPO / "evals").rglob("*.smk"))]
    return files + [Path(p.rules) for p in discover().values()]


def rule_blocks(text: str) -> dict[str, str]:
    """{rule name: its indented body} of a rule file."""
    return {
        m.group(1): m.group(2) for m in re.finditer(r"^(?:rule|checkpoint) (\w+):\n((?:[ \t]+.*\n|\n)*)", text, re.M)
    }


def _pairs(text: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in text.split(", ") if "=" in kv)


def dry_run(tmp_path: Path, *args: str) -> list[dict]:
    """Each job of a dry run: {"rule", "wildcards", "resources"} as Snakemake prints them."""
    out = smk(tmp_path, "-n", *args, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = []
    for m in re.finditer(r"^(?:local)?rule (\w+):\n((?:    .*\n)*)", out.stdout, re.M):
        fields = dict(re.findall(r"^    (\w+): (.*)$", m.group(2), re.M))
        jobs.append(
            {
                "rule": m.group(1),
                "wildcards": _pairs(fields.get("wildcards", "")),
                "resources": _pairs(fields.get("resources", "")),
            }
        )
    assert len(jobs) > 100
    return jobs


def class_of(job: dict, classes: dict) -> str | None:
    r = job["resources"]
    found = [n for n, c in classes.items() if all(r.get(k) == str(v) for k, v in c.items())]
    return found[0] if len(found) == 1 else None


def test_every_rule_names_a_resource_class():
    blocks = {
        f"{os.path.relpath(f, REPO)}: {name}": body
        for f in rule_files()
        for name, body in rule_blocks(f.read_text()).items()
    }
    assert len(blocks) >= 50  # the walk sees the rules
    runs = {k: b for k, b in blocks.items() if any(f"\n    {a}" in f"\n{b}" for a in ACTIONS)}
    assert set(blocks) - set(runs) == {"Snakefile: all"}  # only the target rule runs nothing
    missing = [k for k, b in runs.items() if not re.search(r"^    resources: \*\*res(_judge)?\(", b, re.M)]
    assert not missing, "rules without a resource class (`resources: **res(...)`):\n" + "\n".join(missing)


def test_full_tier_asks_for_a_gpu_only_for_training_and_local_models(tmp_path):
    classes = resolve_config({"tier": "full"})["resources"]
    assert len({tuple(c.values()) for c in classes.values()}) == len(classes)  # each class is recognisable
    assert {n for n, c in classes.items() if c["gpu"]} == {"infer", "train"}
    jobs = [j for j in dry_run(tmp_path, "--config", "tier=full") if j["rule"] != "all"]
    seen = {}
    for job in jobs:
        seen.setdefault(job["rule"], set()).add(class_of(job, classes))
    unclassed = sorted(r for r, c in seen.items() if None in c)
    assert not unclassed, f"jobs without a resource class: {unclassed}"
    expected = {rule: {name} for name, rules in FULL_CLASSES.items() for rule in rules}
    assert set(expected) <= set(seen), f"rules gone from the full DAG: {set(expected) - set(seen)}"
    wrong = {r: (seen[r], expected[r]) for r in expected if seen[r] != expected[r]}
    assert not wrong, f"rule: (class asked for, expected): {wrong}"


def test_a_local_judge_gets_a_gpu_and_an_api_judge_none(tmp_path):
    # Same full tier, but the shared benchmarks judged by a local model (and MT-Bench pairwise, a rule no tier runs).
    user = {
        "tier": "full",
        "evals": {
            "judges": {"local7b": {"backend": "local", "model": "llama-2-7b"}},
            "judge": "local7b",
            "mtbench": {"baseline": "base/llama-2-13b"},
        },
    }
    (tmp_path / "user.yaml").write_text(yaml.safe_dump(user))
    classes = resolve_config(user)["resources"]
    jobs = dry_run(tmp_path, "--configfile", str(tmp_path / "user.yaml"))
    cards = {j["wildcards"]["name"]: class_of(j, classes) for j in jobs if j["rule"] == "judge_card"}
    assert cards.pop("local7b") == "infer" and set(cards.values()) == {"api"}  # the papers' own judges: APIs
    assert "gpt4" in cards
    judged = {"evals_alpacaeval", "evals_mtbench", "evals_mtbench_pairwise", "evals_safety"}
    assert {class_of(j, classes) for j in jobs if j["rule"] in judged} == {"infer"}
    assert {j["rule"] for j in jobs} >= judged
    assert {class_of(j, classes) for j in jobs if j["rule"] == "mote_evaluate"} == {"api"}  # MoTE's judge: an API


@pytest.mark.parametrize("tier", ["ci", "tiny"])
def test_cpu_tiers_ask_for_no_gpu(tmp_path, tier):
    jobs = [j for j in dry_run(tmp_path, "--config", f"tier={tier}") if j["rule"] != "all"]
    unclassed = sorted({j["rule"] for j in jobs if not {"mem_mb", "runtime", "gpu"} <= set(j["resources"])})
    assert not unclassed, f"jobs without a resource class: {unclassed}"
    assert not sorted({j["rule"] for j in jobs if j["resources"]["gpu"] != "0"})


def _sbatch(resources: dict) -> str:
    """The plugin's own sbatch line (and GPU flags) for a job with these resources."""

    class Resources(dict):
        __getattr__ = dict.__getitem__

    job = SimpleNamespace(resources=Resources(resources), threads=2)
    params = {"run_uuid": "u", "slurm_logfile": "l", "comment_str": "c", "account": "", "partition": "", "workdir": ""}
    return get_submit_command(job, params) + set_gres_string(job)


def test_slurm_profile_leaves_gpus_to_the_rules():
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["slurm-status-command"] == "squeue"
    assert "set-resources" not in profile  # no per-rule list
    assert not re.search(r"gpu|gres", yaml.safe_dump(profile.get("default-resources", {})))  # no GPU for everything
    classes = resolve_config({"tier": "full"})["resources"]
    train, cpu = classes["train"], classes["cpu"]
    assert f"--mem {train['mem_mb']} " in _sbatch(train) and f"-t {train['runtime']} " in _sbatch(train)
    assert _sbatch(train).endswith(" --gpus=1")
    assert f"--mem {cpu['mem_mb']} " in _sbatch(cpu) and not re.search("gpu|gres", _sbatch(cpu))
