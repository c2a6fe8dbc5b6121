"""LD-Align's whole DAG at the ci tier in a scratch working directory (targets ld_tables + ld_ablations): it runs,
the tables carry every arm per iteration with paired differences and provenance, iteration k starts from (and is
referenced to) iteration k-1, a second run is a no-op, a user's row folder adds exactly its own jobs; the tiny and
full tiers dry-run with the expected job counts."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
import yaml
from workflow import REPO, job_stats, smk

TARGETS = ["ld_tables", "ld_ablations"]
CI = ["--config", "tier=ci"]


@pytest.fixture(scope="module")
def ci_run(ci_workflow) -> Path:
    """The session's ci run of the default target (LD-Align's main table included), plus the ablation target."""
    assert (ci_workflow / "results/ld_align/ci/tables/main.md").is_file()  # part of the default target
    # two of the four ablation rows keep CI short: `inverse` and `raw_encoder` differ from these only in the weight
    # function and the encoder spec, each tested on its own (test_ld_align_weights.py, test_ld_align_guide.py)
    res = smk(ci_workflow, "ld_ablations", *CI, "ld_align={ablations: [permuted, policy_latent]}")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    assert "LD-Align ablations at tier ci" in res.stdout + res.stderr  # the summary is printed at the end
    return ci_workflow


@pytest.mark.slow
def test_main_table_rows_differences_and_provenance(ci_run):
    t = ci_run / "results/ld_align/ci/tables"
    rows = list(csv.DictReader(io.StringIO((t / "main.csv").read_text())))
    assert [(r["method"], r["iteration"]) for r in rows] == [
        ("SFT start policy", "-"), ("SPIN", "0"), ("SPIN", "1"), ("LD-Align", "0"), ("LD-Align", "1")
    ]  # fmt: skip
    assert all(r["model_hash"] for r in rows) and len({r["model_hash"] for r in rows}) == 5
    md = (t / "main.md").read_text()
    assert "No LD-Align numbers were reported" in md and "ld_align/iter1 | spin/iter1" in md
    assert "Provenance: commit" in md
    guide = (t / "guide.md").read_text()
    assert "AUC d: wrong vs right" in guide and "| LD-Align | 0 |" in guide
    reported = (t / "reported.md").read_text()
    assert "context only: not LD-Align's numbers" in reported and "63.16" in reported
    assert (t / "main.png").stat().st_size > 10_000
    ablations = (t / "ablations.md").read_text()
    for label in ("SPIN", "permuted weights", "policy hidden states"):
        assert label in ablations
    assert "Distances and weights per arm" in ablations  # each arm's distance against the verifiable answers


@pytest.mark.slow
def test_iterations_chain_and_weights(ci_run):
    r = ci_run / "results/ld_align/ci"
    for arm in ("spin", "ld_align", "permuted"):
        meta1 = json.loads((r / f"models/{arm}/iter1/model.json").read_text())
        assert meta1["base"] == f"results/ld_align/ci/models/{arm}/iter0"  # the previous iteration, also the reference
        meta0 = json.loads((r / f"models/{arm}/iter0/model.json").read_text())
        assert meta0["base"] == "results/ld_align/ci/models/sft" and meta1["iteration"] == 1
    spin = json.loads((r / "models/spin/iter1/model.json").read_text())["pair_weights"]
    assert spin["min"] == spin["max"] == 1.0
    weighted = [json.loads(line) for line in (r / "weighted/ld_align/iter1.jsonl").read_text().splitlines()]
    assert {w["id"].split("@")[1] for w in weighted} == {"g0", "g1"}  # SPIN's mixing: iterations 0 and 1
    w = [x["weight"] for x in weighted]
    assert sum(w) / len(w) == pytest.approx(1.0, abs=1e-6) and min(w) >= 0.25 - 1e-9 and max(w) <= 4 + 1e-9
    ev = json.loads((r / "eval/ld_align/iter1.json").read_text())
    assert set(ev["per_item"]) == {"heldout_nll", "implicit_reward", "oracle"} and ev["provenance"]["tier"] == "ci"
    start = json.loads((r / "eval/start.json").read_text())
    assert set(start["per_item"]["implicit_reward"].values()) == {0.5}  # the start policy is its own reference


@pytest.mark.slow
def test_second_run_is_a_noop(ci_run):
    res = smk(ci_run, *TARGETS, "-n", *CI, "ld_align={ablations: [permuted, policy_latent]}")
    assert res.returncode == 0 and "Nothing to be done" in res.stdout + res.stderr, res.stdout[-2000:]


@pytest.mark.slow
def test_a_row_folder_adds_exactly_its_jobs(ci_run, tmp_path):
    rows = tmp_path / "my_rows"
    shutil.copytree(REPO / "methods/ld_align/rows/rank_weights", rows / "my_rank")  # under a name of one's own
    spec = yaml.safe_load((rows / "my_rank/row.yaml").read_text())
    (rows / "my_rank/row.yaml").write_text(yaml.safe_dump({**spec, "enabled": True}))
    res = smk(ci_run, "ld_tables", "-n", *CI, "evals={shared: false}", f"row_dirs=[{rows}]")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    stats = job_stats(res.stdout)
    # its 2 iterations (pairs, distances, weights, training, evaluation each) + its iteration-1 answers + the table
    assert stats == {"ld_pairs": 2, "ld_distances": 2, "ld_weights": 2, "ld_train": 2, "ld_generate": 1,
                     "ld_evaluate": 2, "ld_tables": 1}  # fmt: skip
    assert "my_rank" in res.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("tier", "expected"),
    [
        # tiny: SFT, 2 iterations x (SPIN, LD-Align); ablations are a separate target
        ("tiny", {"ld_data": 1, "ld_sft": 1, "ld_generate_first": 2, "ld_guide": 1, "ld_generate": 2, "ld_pairs": 4,
                  "ld_distances": 2, "ld_weights": 2, "ld_train": 4, "ld_evaluate": 5, "ld_tables": 1}),
        # full: no SFT step (zephyr-7b-sft-full is the start), SPIN's 4 iterations
        ("full", {"ld_data": 1, "ld_generate_first": 2, "ld_guide": 1, "ld_generate": 6, "ld_pairs": 8,
                  "ld_distances": 4, "ld_weights": 4, "ld_train": 8, "ld_evaluate": 9, "ld_tables": 1}),
    ],
)  # fmt: skip
def test_tiny_and_full_dry_run(tmp_path, tier, expected):
    res = smk(tmp_path, "ld_tables", "-n", "--config", f"tier={tier}", "papers=[ld_align]", timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    stats = job_stats(res.stdout)
    assert {k: stats.get(k, 0) for k in [*expected, "ld_sft"]} == {"ld_sft": 0, **expected}
