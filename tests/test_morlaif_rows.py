"""MORLAIF's arms are rows: the manifest's eight give the library's scalarizers, a user's row folder (the shipped
power-mean example) joins the PPO arms and figure B with no other edit, a broken row fails at start naming its
row.yaml, and a new row reruns figure B and its own arm only: the principle weights, which every arm reads, do not
depend on the rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from workflow import job_stats, smk

from alignrepro.config import ConfigError, resolve_config
from alignrepro.errors import UserError
from alignrepro.methods.morlaif import ppo
from alignrepro.methods.morlaif.arms import Arm, figure_b_arms, run_arms
from alignrepro.methods.morlaif.scalarizers import SCALARIZERS, bernoulli_nash, scalarize
from alignrepro.rows import paper_rows

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "methods" / "morlaif" / "rows" / "power_mean"
ARMS = ["linear", "max_median", "max_min", "soft_max_min", "uncertainty_weighted", "lower_quantile", "bernoulli_nash"]
# distinct values per sample, negative ones included, so that each of the seven gives a different number
S = torch.tensor([[1.5, -0.5, 0.25, 2.0, -1.25], [0.1, 0.7, -2.0, 0.4, 1.1]])
W = torch.tensor([1.0, 0.5, -0.2, 2.0, 1.5])
SHARED = {"temperature": 0.5, "lam": 0.2, "quantile": 0.4}  # not the defaults: they must reach the functions


def _user_rows(tmp_path: Path, edit=lambda t: t, name: str = "my_power_mean") -> Path:
    rows = tmp_path / "my_rows"
    shutil.copytree(EXAMPLE, rows / name)
    row = rows / name / "row.yaml"
    row.write_text(edit(row.read_text().replace("enabled: false", "enabled: true")))
    return rows


def test_manifest_rows_are_the_eight_arms_and_give_the_library_values():
    rows = paper_rows("morlaif")
    assert [n for n, r in rows.items() if r.folder is None] == [*ARMS, "single_pm"]
    arms = run_arms([*ARMS, "single_pm"], SHARED)
    values = {}
    for name in ARMS:
        arm = arms[name]
        assert arm.weighted and arm.function() is SCALARIZERS[name]
        got = scalarize(arm.function(), S, W, **arm.params)
        assert torch.allclose(got, scalarize(name, S, W, **SHARED)), name
        values[name] = tuple(got.tolist())
    assert len(set(values.values())) == len(ARMS)  # the tensor tells the seven apart: a swapped row would show
    # each row gets only the shared parameters its function takes (a changed temperature reruns soft_max_min alone)
    assert arms["soft_max_min"].params == {"temperature": 0.5} and arms["linear"].params == {}
    assert arms["lower_quantile"].params == {"quantile": 0.4} and arms["uncertainty_weighted"].params == {"lam": 0.2}
    single = arms["single_pm"]
    assert not single.weighted and single.pms == "cai" and single.label == "Single-PM RLAIF"
    assert scalarize(single.function(), S[:, :1]).tolist() == S[:, 0].tolist()  # identity: the one PM's raw score
    with pytest.raises(ValueError, match="exactly one"):
        single.function()(S)
    assert list(figure_b_arms(SHARED)) == ARMS  # figure B: every scalarizer row; single_pm is its baseline instead


def test_the_shipped_example_is_known_but_not_run():
    rows = paper_rows("morlaif")
    assert rows["power_mean"].folder == EXAMPLE and not rows["power_mean"].enabled
    assert list(run_arms(["linear", "single_pm"], {})) == ["linear", "single_pm"]
    assert "power_mean" not in figure_b_arms({})


def test_a_user_row_folder_joins_the_arms_and_figure_b_and_computes(tmp_path):
    rows = _user_rows(tmp_path)
    arms = run_arms(["linear", "single_pm"], SHARED, [rows])
    assert list(arms) == ["linear", "single_pm", "my_power_mean"]
    assert list(figure_b_arms(SHARED, [rows]))[-1] == "my_power_mean"
    arm = arms["my_power_mean"]
    assert arm.params == {"p": -1.0} and arm.folder == str(rows / "my_power_mean")  # its own params, no shared one
    fn = Arm.from_json(json.loads(json.dumps(arm.to_json()))).function()  # as a job gets it (--row-json)
    sig = torch.sigmoid(S)
    harmonic = S.shape[1] / (1 / sig).sum(-1)
    assert torch.allclose(scalarize(fn, S, **arm.params), harmonic)
    assert torch.allclose(fn(S, p=1.0), sig.mean(-1))
    assert torch.allclose(fn(S, p=0.0), bernoulli_nash(S))  # p -> 0: the geometric mean
    # PPO's reward with the row's function: z-score, weights, then the function with the row's params
    mean, std = torch.full((5,), 0.5), torch.full((5,), 2.0)

    class Bank:
        principles = list("abcde")

    reward = ppo.ScalarizedPMReward(
        Bank(), None, {}, fn, weights=W, zscore=(mean, std), scalarizer_params=arm.params, render=lambda m, r: r
    )
    assert torch.allclose(reward.combine(S), fn((S - mean) / std * W, p=-1.0))


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda t: t.replace("scalarizer.py:power_mean", "scalarizer.py:power_man"), "has no 'power_man'"),
        (lambda t: t.replace('"scalarizer.py:power_mean"', '"mine.py:power_mean"'), "mine.py does not exist"),
        (
            lambda t: t.replace('"scalarizer.py:power_mean"', '"alignrepro.methods.morlaif.scalarizers:nope"'),
            "scalarizers:nope",
        ),
        (lambda t: t.replace("params: {p: -1.0}", "params: {q: -1.0}"), r"field 'params': \['q'\] are not parameters"),
        (lambda t: t + "pms: all\n", "field 'pms'"),
        (lambda t: t + "weights: uniform\n", "'weights' was unexpected"),
        (
            lambda t: "\n".join(x for x in t.splitlines() if not x.startswith("scalarizer:")),
            "'scalarizer' is a required",
        ),
    ],
)
def test_a_broken_row_fails_at_start_naming_its_row_yaml(tmp_path, edit, needle):
    rows = _user_rows(tmp_path, edit, name="broken")
    with pytest.raises(UserError, match=needle) as e:
        run_arms(["linear", "single_pm"], {}, [rows])
    assert str(rows / "broken" / "row.yaml") in str(e.value)


def test_arms_name_manifest_rows_at_config_time():
    with pytest.raises(ConfigError, match=r"config key 'morlaif\.arms\[1\]': 'nope' is not one of \['linear'"):
        resolve_config({"tier": "ci", "morlaif": {"arms": ["linear", "nope", "single_pm"]}})
    with pytest.raises(ConfigError, match="morlaif.arms"):  # figure C needs the single-PM baseline
        resolve_config({"tier": "ci", "morlaif": {"arms": ["linear", "max_min"]}})
    assert resolve_config({"tier": "ci"})["morlaif"]["arms"] == ["linear", "max_min", "single_pm"]


def test_a_headline_that_is_no_arm_fails_at_start_naming_the_key(tmp_path):
    res = smk(tmp_path, "-n", "--config", "tier=ci", "morlaif={headline: lnear}")
    assert res.returncode != 0
    assert "config key 'morlaif.headline': 'lnear' is not one of the run's arms" in res.stdout + res.stderr
    assert "did you mean 'linear'?" in res.stdout + res.stderr


def test_a_new_row_reruns_figure_b_and_its_own_arm_only(tmp_path):
    """After a complete (stand-in) ci run of MORLAIF, enabling a row folder schedules figure B, the row's own PPO arm,
    answers and figure E cells, and the tables: never the analysis (weights.json) or another arm."""
    targets = ["morlaif_tables", "morlaif_figure_e"]
    summary = smk(tmp_path, "--summary", *targets, "--config", "tier=ci")
    assert summary.returncode == 0, summary.stderr[-3000:]
    outputs = [
        line.split("\t")[0] for line in summary.stdout.splitlines() if line.endswith("\tmissing\tupdate pending")
    ]
    assert any(o.endswith("analysis/weights.json") for o in outputs)
    for out in outputs:  # every output present (contents do not matter to the DAG), then marked up to date
        (tmp_path / out).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / out).write_text("{}")
    touched = smk(tmp_path, "--touch", *targets, "--config", "tier=ci")
    assert touched.returncode == 0, touched.stderr[-3000:]

    _user_rows(tmp_path)
    res = smk(tmp_path, "-n", "-p", *targets, "--config", "tier=ci", "row_dirs=[my_rows]")
    assert res.returncode == 0, res.stderr[-3000:]
    assert job_stats(res.stdout) == {
        "morlaif_figure_b": 1,
        "morlaif_ppo": 1,
        "morlaif_respond": 1,
        "morlaif_figure_e_data": 1,
        "morlaif_figure_e": 1,
        "morlaif_tables": 1,
    }
    assert "output: results/morlaif/ci/ci-random-llama/ppo/my_power_mean/model.json" in res.stdout  # the one arm
    figure_b = next(line for line in res.stdout.splitlines() if "alignrepro.methods.morlaif.figure_b" in line)
    assert '"name": "my_power_mean"' in figure_b and '"params": {"p": -1.0}' in figure_b  # the row, via params:
