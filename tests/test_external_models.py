"""External checkpoints (a plain HF folder, a PEFT adapter folder; no model.json) load through a reference written by
alignrepro.external, reach `alignrepro evaluate`, and join the workflow's leaderboard through `evals.external`."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from workflow import job_stats, smk

from alignrepro.config import ConfigError
from alignrepro.errors import IntegrityError, UserError
from alignrepro.evals import evaluate
from alignrepro.external import import_model, plan
from alignrepro.integrity import manifest_hash
from alignrepro.models import load_model, model_identity, read_model_meta


@pytest.fixture(scope="module")
def checkpoints(ci_model, tmp_path_factory):
    """The ci model saved the way users' checkpoints come: an HF folder, and a LoRA adapter over it (non-zero B, so
    it changes the logits) that records that folder as its base."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from alignrepro.models import load_tokenizer

    root = tmp_path_factory.mktemp("external")
    hf, lora = root / "hf", root / "lora"
    load_model(ci_model).save_pretrained(hf)
    load_tokenizer(ci_model).save_pretrained(hf)
    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(hf), LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"])
    )
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g))
    peft_model.save_pretrained(lora)
    assert not (hf / "model.json").exists() and not (lora / "model.json").exists()
    return {"hf": hf, "lora": lora}


def _logits(model):
    with torch.no_grad():
        return model(input_ids=torch.tensor([[1, 5, 9, 17, 33]])).logits


def test_plain_hf_folder_loads_through_its_reference(checkpoints, tmp_path):
    from transformers import AutoModelForCausalLM

    hf = checkpoints["hf"]
    meta = import_model(hf, tmp_path / "ref", "mine")
    assert [p.name for p in (tmp_path / "ref").iterdir()] == ["model.json"]  # no weight copied
    assert meta["kind"] == "base" and meta["weights"] == str(hf.resolve()) and meta["source"] == "external"
    files = meta["external"]["files"]
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(files)
    assert files["model.safetensors"]["size"] == (hf / "model.safetensors").stat().st_size
    assert meta["weights_sha256"] == manifest_hash(files)
    identity = model_identity(tmp_path / "ref")
    assert identity["name"] == "mine" and identity["weights_sha256"] == meta["weights_sha256"]
    assert torch.equal(_logits(load_model(tmp_path / "ref")), _logits(AutoModelForCausalLM.from_pretrained(hf)))


def test_adapter_folder_loads_merged_over_its_base(checkpoints, ci_model, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    hf, lora = checkpoints["hf"], checkpoints["lora"]
    meta = import_model(lora, tmp_path / "ref", "lora")  # base: the folder adapter_config.json records
    assert meta["kind"] == "lora" and meta["adapter"] == str(lora.resolve())
    assert "README.md" not in meta["external"]["files"]  # PEFT's model card: not loaded, not hashed
    assert meta["base"] == str(tmp_path / "ref" / "base")  # the plain base folder got its own reference
    assert read_model_meta(tmp_path / "ref" / "base")["weights"] == str(hf.resolve())
    want = _logits(PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(hf), lora).merge_and_unload())
    got = _logits(load_model(tmp_path / "ref"))
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, _logits(AutoModelForCausalLM.from_pretrained(hf)), atol=1e-3)  # it did apply
    identity = model_identity(tmp_path / "ref")
    assert identity["adapter_sha256"] == manifest_hash(meta["external"]["files"])
    assert identity["base"]["name"] == "lora-base"
    # over a registry model folder instead: that folder is the base, as for the workflow's own adapters
    meta = import_model(lora, tmp_path / "ref2", "lora", base=ci_model)
    assert meta["base"] == str(ci_model) and model_identity(tmp_path / "ref2")["base"]["name"] == "ci-random-llama"
    assert meta["adapter_base_recorded"] == str(hf)


def test_a_changed_checkpoint_is_refused_on_load(checkpoints, tmp_path):
    hf = tmp_path / "hf"
    shutil.copytree(checkpoints["hf"], hf)
    import_model(hf, tmp_path / "ref", "mine")
    read_model_meta(tmp_path / "ref")
    cfg = json.loads((hf / "generation_config.json").read_text())
    (hf / "generation_config.json").write_text(json.dumps({**cfg, "max_length": 7}))
    with pytest.raises(IntegrityError, match=r"hf/generation_config\.json: .*replaced"):
        read_model_meta(tmp_path / "ref")


def test_folders_that_cannot_be_imported_say_why(checkpoints, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="neither a Hugging Face model folder"):
        import_model(tmp_path / "empty", tmp_path / "ref", "x")
    with pytest.raises(UserError, match="alignrepro evaluate --model"):  # loading it as it is: a hint, no traceback
        read_model_meta(checkpoints["hf"])
    orphan = tmp_path / "orphan"  # an adapter whose recorded base is gone
    shutil.copytree(checkpoints["lora"], orphan)
    cfg = json.loads((orphan / "adapter_config.json").read_text())
    (orphan / "adapter_config.json").write_text(json.dumps({**cfg, "base_model_name_or_path": "org/gone"}))
    with pytest.raises(UserError, match="'org/gone'.*not a local folder"):
        import_model(orphan, tmp_path / "ref", "x")
    with pytest.raises(UserError, match="takes no base"):
        import_model(checkpoints["hf"], tmp_path / "ref", "x", base=checkpoints["hf"])
    plain = tmp_path / "plain"  # a base LM without a chat template: must say which format it answers in
    shutil.copytree(checkpoints["hf"], plain)
    (plain / "chat_template.jinja").unlink()
    with pytest.raises(UserError, match="no chat template"):
        import_model(plain, tmp_path / "ref", "x")
    assert import_model(plain, tmp_path / "ref", "x", prompt_template="hh")["prompt_template"] == "hh"


def test_config_entries_are_checked_at_start(checkpoints, tmp_path):
    hf, lora = checkpoints["hf"], checkpoints["lora"]
    with pytest.raises(ConfigError, match=r"config key 'evals.external.x.path': .*not a folder"):
        plan("x", {"path": str(tmp_path / "nope")}, ["ci-random-llama"])
    with pytest.raises(ConfigError, match=r"'evals.external.x.base': .*takes no base"):
        plan("x", {"path": str(hf), "base": "ci-random-llama"}, ["ci-random-llama"])
    with pytest.raises(ConfigError, match=r"'evals.external.x.base': 'llama' is neither a registry model"):
        plan("x", {"path": str(lora), "base": "llama"}, ["ci-random-llama"])
    p = plan("x", {"path": str(lora)}, ["ci-random-llama"])  # the recorded base folder: its files are inputs too
    assert p["kind"] == "peft" and p["base"] == str(hf) and p["registry_base"] is None
    assert f"{lora}/adapter_model.safetensors" in p["inputs"] and f"{hf}/model.safetensors" in p["inputs"]
    p = plan("x", {"path": str(lora), "base": "ci-random-llama"}, ["ci-random-llama"])
    assert p["registry_base"] == "ci-random-llama" and "results/models/ci-random-llama/model.json" in p["inputs"]
    assert p["prompt_template"] == "chat"


def test_config_entry_typos_fail_at_start():
    from alignrepro.config import resolve_config

    assert resolve_config({"tier": "ci"})["evals"]["external"] == {}
    with pytest.raises(ConfigError, match=r"'evals.external.mine': unknown key 'pth' \(did you mean 'path'\?\)"):
        resolve_config({"tier": "ci", "evals": {"external": {"mine": {"pth": "/x"}}}})
    with pytest.raises(ConfigError, match=r"'evals.external.mine.prompt_template'"):
        resolve_config({"tier": "ci", "evals": {"external": {"mine": {"path": "/x", "prompt_template": "llama"}}}})


def test_evaluate_takes_hf_and_adapter_folders_without_model_json(checkpoints, tmp_path):
    ref = tmp_path / "reference.jsonl"  # the plain folder's own answers are the adapter's AlpacaEval reference
    plain = evaluate.main(
        ["--model", str(checkpoints["hf"]), "--tier", "ci", "--out-dir", str(tmp_path / "hf"), "--benchmarks", "lmeval"]
    )
    assert any(t.get("n") for t in plain["lmeval"]["tasks"].values())  # lm-eval ran on the folder's weights
    assert read_model_meta(tmp_path / "hf" / "model")["external"]["path"] == str(checkpoints["hf"].resolve())
    shutil.copy(tmp_path / "hf" / "answers" / "alpacaeval.jsonl", ref)
    out = tmp_path / "lora"
    results = evaluate.main(
        ["--model", str(checkpoints["lora"]), "--tier", "ci", "--reference-outputs", str(ref), "--out-dir", str(out),
         "--benchmarks", "alpacaeval,mtbench"]
    )  # fmt: skip
    assert results["alpacaeval"]["n_total"] == 4 and results["mtbench"]["n"] + results["mtbench"]["n_failed"] == 16
    answered_by = json.loads((out / "answers" / "respond.provenance.json").read_text())["model"]
    assert answered_by["adapter_sha256"] == read_model_meta(out / "model")["adapter_sha256"]
    # the field's own formats beside the suite's: alpaca_eval's model_outputs.json, FastChat's MT-Bench folder
    outputs = json.loads((out / "answers" / "model_outputs.json").read_text())
    answers = [json.loads(x) for x in (out / "answers" / "alpacaeval.jsonl").read_text().splitlines()]
    assert [o["output"] for o in outputs] == [a["output"] for a in answers] and {o["generator"] for o in outputs} == {
        "lora"
    }
    fastchat = out / "fastchat" / "mt_bench"
    assert len((fastchat / "model_answer" / "lora.jsonl").read_text().splitlines()) == 8
    assert len((fastchat / "model_judgment" / "heuristic_single.jsonl").read_text().splitlines()) == 16
    with pytest.raises(UserError, match="--base 'nope'"):
        evaluate.main(["--model", str(checkpoints["lora"]), "--base", "nope", "--tier", "ci", "--out-dir", str(out)])


def test_workflow_config_entry_puts_checkpoints_on_the_leaderboard(checkpoints, tmp_path):
    hf, lora = tmp_path / "mine", checkpoints["lora"]
    shutil.copytree(checkpoints["hf"], hf)  # changed below
    tmp_path = tmp_path / "work"
    external = f'evals={{external: {{mine: {{path: "{hf}"}}, lora: {{path: "{lora}", base: ci-random-llama}}}}}}'
    config = ["--config", "tier=ci", "papers=[]", external]
    board = "results/evals/ci/leaderboard.md"
    res = smk(tmp_path, board, "-n", *config)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    # no paper: the two checkpoints and their AlpacaEval reference (the registry model) on every shared benchmark
    per_model = {f"evals_{b}": 3 for b in ("respond", "alpacaeval", "mtbench", "lmeval", "safety")}
    assert job_stats(res.stdout) == {
        "base_model": 1, "evals_import_model": 2, "evals_alpacaeval_prompts": 1, "evals_safety_prompts": 1,
        "judge_card": 2, "evals_leaderboard": 1, **per_model,
    }  # fmt: skip
    assert "scores/external/mine/lmeval.json" in res.stdout and "scores/external/lora/safety.json" in res.stdout
    # the import itself runs (no weights copied), then a changed checkpoint file re-imports that model alone
    ref = "results/evals/ci/external/mine/model.json"
    res = smk(tmp_path, ref, *config)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert json.loads((tmp_path / ref).read_text())["weights"] == str(hf)
    res = smk(tmp_path, ref, "-n", *config)
    assert "Nothing to be done" in res.stdout + res.stderr
    cfg = json.loads((hf / "generation_config.json").read_text())
    (hf / "generation_config.json").write_text(json.dumps(cfg, indent=1))  # same settings, other bytes
    res = smk(tmp_path, board, "-n", *config)  # the start-up integrity scan leaves the change to Snakemake
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert job_stats(res.stdout)["evals_import_model"] == 2  # mine (changed) + lora (never imported)
    assert "Updated input files: " + str(hf / "generation_config.json") in res.stdout + res.stderr


# --- one resolver wherever a model is asked for (alignrepro.external.resolve_model, behind `alignrepro <step>`) ------
def _generate(model_args, prompts, out):
    from alignrepro import cli
    from alignrepro.io import read_jsonl

    spec = ["--spec-json", '{"max_new_tokens": 4}']
    cli.main(["generate", *model_args, "--prompts", str(prompts), "--out", str(out), *spec])
    return [r["output"] for r in read_jsonl(out)]


def test_every_step_takes_hf_adapter_and_minimal_model_folders(checkpoints, ci_model, tmp_path, monkeypatch):
    from alignrepro.external import resolve_model

    monkeypatch.setenv("ALIGNREPRO_MODEL_REFS", str(tmp_path / "refs"))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"id": "a", "instruction": "Say hi."}\n{"id": "b", "instruction": "Count to three."}\n')
    hf, lora = checkpoints["hf"], checkpoints["lora"]
    own = _generate(["--model", str(ci_model)], prompts, tmp_path / "own.jsonl")
    assert _generate(["--model", str(hf)], prompts, tmp_path / "hf.jsonl") == own  # the same weights, greedy
    refs = {json.loads(p.read_text())["weights"] for p in (tmp_path / "refs").glob("*/model.json")}
    assert refs == {str(hf.resolve())}  # a reference in the cache, no weights copied
    _generate(["--model", str(lora)], prompts, tmp_path / "lora.jsonl")  # base from adapter_config.json
    _generate(["--model", str(lora), "--base", str(ci_model)], prompts, tmp_path / "lora2.jsonl")
    bases = {json.loads(p.read_text()).get("base") for p in (tmp_path / "refs").glob("lora-*/model.json")}
    assert len(bases) == 2 and str(ci_model) in bases
    minimal = tmp_path / "minimal"  # the least model.json one writes by hand: no name, no weights
    shutil.copytree(ci_model, minimal)
    (minimal / "model.json").write_text('{"kind": "base"}')
    assert _generate(["--model", str(minimal)], prompts, tmp_path / "minimal.jsonl") == own
    assert resolve_model("ci-random-llama", models_dir=ci_model.parent) == ci_model  # a registry name
    with pytest.raises(UserError, match=r"--policy 'nope': no such folder; expected a model folder"):
        resolve_model("nope", option="--policy")
    with pytest.raises(UserError, match="drop --base"):
        resolve_model(minimal, base=str(ci_model))


def test_a_hub_id_resolves_through_the_hf_cache_offline(checkpoints, tmp_path):
    """A hub id is the full tier's way; offline it resolves from the local HF cache (here a cache laid out by hand),
    pinned to the cached commit, and loads through from_pretrained like the full tier's registry models."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--local-org--tiny-chat"
    shutil.copytree(checkpoints["hf"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"id": "a", "instruction": "Say hi."}\n')
    env = {k: v for k, v in os.environ.items() if k != "ALIGNREPRO_TRACEBACK"} | {
        "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "ALIGNREPRO_MODEL_REFS": str(tmp_path / "refs"),
    }  # fmt: skip
    cmd = [str(Path(sys.executable).parent / "alignrepro"), "generate", "--model", "local-org/tiny-chat", "--prompts",
           str(prompts), "--out", str(tmp_path / "o.jsonl"), "--spec-json", '{"max_new_tokens": 2}']  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (ref,) = (tmp_path / "refs").glob("*/model.json")
    meta = json.loads(ref.read_text())
    assert (meta["weights"], meta["revision"], meta["source"]) == ("local-org/tiny-chat", commit, "hub")
    assert (tmp_path / "o.jsonl").is_file()
