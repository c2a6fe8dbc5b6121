"""MoTE's Table 4 architectures are rows (paper.yaml `rows:` with `table: table4`, or a row folder): train.py's
`arch_settings` reads the row, the rules' arch wildcard and Table 4's labels come from the rows, a user's row folder
adds an architecture, a broken row fails at start naming its row.yaml, and `mote.archs` names only Table 4 rows."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from workflow import job_stats, smk

from alignrepro.config import ConfigError, resolve_config
from alignrepro.errors import UserError
from alignrepro.methods.mote import train as mote_train
from alignrepro.rows import enabled, paper_rows

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "methods" / "mote" / "rows" / "mote_rank_x2"

# What arch_settings gave for every arch before the archs became rows (dumped from the name-branching code), with the
# default mote.train config (lora r 16, alpha 32, dropout 0.05; mote skip_p 0.5, contrastive_weight 0.1, …).
MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
MOTE_CONFIG = {
    "r": 16, "lora_alpha": 32, "dropout": 0.05, "target_modules": MODULES,
    "experts": ["analysis", "guidance", "answer"], "shared_expert": True, "mix_alpha": 0.5, "routing": "step",
    "n_gate_experts": 4, "top_k": 2, "contrastive_weight": 0.0, "contrastive_tau": 0.1, "contrastive_tokens": 64,
    "query_expert_infer": "analysis", "seed": 0,
}  # fmt: skip
EXPECTED = {  # (arch, explicit) -> settings
    ("lora", False): {"format": "peft", "r": 16, "alpha": 32, "skip_p": 0.0},
    ("lora_x2", False): {"format": "peft", "r": 32, "alpha": 64, "skip_p": 0.0},
    ("vanilla_moe", False): {"format": "mote", "skip_p": 0.0,
                             "mote": {**MOTE_CONFIG, "routing": "gate", "shared_expert": False}},
    ("mixlora", False): {"format": "mote", "skip_p": 0.0,
                         "mote": {**MOTE_CONFIG, "routing": "gate", "shared_expert": False,
                                  "contrastive_weight": 0.1}},
    ("mote", False): {"format": "mote", "skip_p": 0.5, "mote": MOTE_CONFIG},
    ("mote", True): {"format": "mote", "skip_p": 0.0, "mote": MOTE_CONFIG},  # explicit datasets: no step-skip mask
    ("mote_no_skip", False): {"format": "mote", "skip_p": 0.0, "mote": MOTE_CONFIG},
    ("mote_no_shared", False): {"format": "mote", "skip_p": 0.5, "mote": {**MOTE_CONFIG, "shared_expert": False}},
    ("mote_no_shared", True): {"format": "mote", "skip_p": 0.0, "mote": {**MOTE_CONFIG, "shared_expert": False}},
    ("mote_no_both", False): {"format": "mote", "skip_p": 0.0, "mote": {**MOTE_CONFIG, "shared_expert": False}},
}  # fmt: skip
ARCHS = ["mote", "lora", "lora_x2", "vanilla_moe", "mixlora", "mote_no_skip", "mote_no_shared", "mote_no_both"]
LABELS = ["MoTE", "LoRA", "LoRA-rank-x2", "Vanilla-MoE", "MixLoRA", "MoTE-minus-step-skipping",
          "MoTE-minus-shared-expert", "MoTE-minus-both"]  # fmt: skip


def _plain(settings: dict) -> dict:
    out = {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in settings.items()}
    if "mote" in out:
        out["mote"] = {k: list(v) if isinstance(v, tuple) else v for k, v in out["mote"].items()}
    return out


@pytest.mark.parametrize(("arch", "explicit"), list(EXPECTED))
def test_arch_settings_are_what_the_name_branches_gave(arch, explicit):
    cfg = mote_train.merged_config({})
    assert _plain(mote_train.arch_settings(arch, cfg, explicit)) == EXPECTED[(arch, explicit)]
    if (arch, True) not in EXPECTED:  # explicit datasets drop the step-skip mask only (mote, mote_no_shared)
        assert _plain(mote_train.arch_settings(arch, cfg, True)) == EXPECTED[(arch, False)]


def test_the_table4_rows_are_the_papers_architectures_in_order():
    rows = {n: r for n, r in paper_rows("mote").items() if r.table == "table4"}
    assert list(mote_train.arch_rows()) == list(rows) == [*ARCHS, "mote_rank_x2"]
    assert [rows[a].label for a in ARCHS] == LABELS
    assert not rows["mote_rank_x2"].enabled  # shipped, not in the default run
    # a Table 4 row is never a Table 1 baseline, and the other way round
    assert [r.name for r in enabled("mote", ["sft"])] == ["sft"]
    assert [r.name for r in enabled("mote", ["mote", "lora"], table="table4")] == ["mote", "lora"]
    with pytest.raises(UserError, match=r"unknown rows of table4 \['sft'\]"):
        enabled("mote", ["sft"], table="table4")
    with pytest.raises(UserError, match="unknown arch 'nope'. Available: mote, lora"):
        mote_train.arch_settings("nope", mote_train.merged_config({}))


def test_the_example_row_is_mote_at_twice_the_rank(tmp_path):
    cfg = mote_train.merged_config({})
    s = _plain(mote_train.arch_settings("mote_rank_x2", cfg))
    assert s == {"format": "mote", "skip_p": 0.5, "mote": {**MOTE_CONFIG, "r": 32, "lora_alpha": 64}}


def _user_rows(tmp_path: Path, edit=lambda t: t, name: str = "my_arch") -> Path:
    rows = tmp_path / "my_rows"
    shutil.copytree(EXAMPLE, rows / name)
    row = rows / name / "row.yaml"
    row.write_text(edit(row.read_text().replace("enabled: false", "enabled: true")))
    return rows


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda t: t.replace("adapter: mote ", "adapter: moe "), "field 'adapter'"),
        (lambda t: t.replace("adapter: mote ", "adapter: peft "), "does not allow 'step'"),  # PEFT has no routing
        (lambda t: t.replace("shared_expert: true\n", ""), "'shared_expert' is a required"),
        (lambda t: t.replace("rank_scale: 2", "rank_scale: 0"), "field 'rank_scale'"),
        (lambda t: t.replace("routing: step", "routing: gate"), "'contrastive' is a required"),
        (lambda t: t.replace("table: table4", "table: table5"), "field 'table'"),
        (lambda t: t + "experts: 2\n", "'experts' was unexpected"),
    ],
)
def test_a_broken_arch_row_fails_naming_its_row_yaml(tmp_path, edit, needle):
    rows = _user_rows(tmp_path, edit, name="broken")
    with pytest.raises(UserError, match=needle) as e:
        enabled("mote", ["mote"], [rows], table="table4")
    assert str(rows / "broken" / "row.yaml") in str(e.value)


def test_config_archs_name_only_table4_rows():
    for key, bad in (("archs", "nope"), ("archs", "sft"), ("baselines", "lora")):
        with pytest.raises(ConfigError, match=rf"mote\.{key}\[0\]") as e:
            resolve_config({"tier": "ci", "mote": {key: [bad]}})
        assert bad in str(e.value)
    assert resolve_config({"tier": "ci", "mote": {"archs": ["mixlora"]}})["mote"]["archs"] == ["mixlora"]


def test_an_enabled_arch_folder_adds_exactly_its_jobs_and_table4_row(tmp_path):
    args = ["mote_ablations", "--config", "tier=ci", "papers=[mote]"]
    before = smk(tmp_path / "a", "-n", *args, timeout=300)
    assert before.returncode == 0, before.stdout[-2000:] + before.stderr[-2000:]
    rows = _user_rows(tmp_path)
    after = smk(tmp_path / "b", "-n", "-p", *args, f"row_dirs=[{rows}]", timeout=300)
    assert after.returncode == 0, after.stdout[-2000:] + after.stderr[-2000:]
    old, new = job_stats(before.stdout), job_stats(after.stdout)
    gained = {k: new.get(k, 0) - old.get(k, 0) for k in set(old) | set(new) if new.get(k, 0) != old.get(k, 0)}
    assert gained == {"mote_train": 1, "mote_infer": 1}, gained  # its model and answers; Table 4 gains its row
    train_cmd = next(x for x in after.stdout.splitlines() if "mote.train --arch my_arch" in x)
    assert '"rank_scale": 2' in train_cmd and '"label"' not in train_cmd  # training fields through params
    assert '"label": "MoTE-rank-x2"' in next(x for x in after.stdout.splitlines() if "mote.aggregate" in x)
