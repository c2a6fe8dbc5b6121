"""Shared fixtures. Every test runs offline: no hub, W&B offline."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _reads_ci_workflow(item) -> bool:
    return "ci_workflow" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(items):
    """The tests that read the session's ci run go last, in their order (so a module fixture built on the run, e.g.
    a module's `ci_run`, is still set up once). The run itself starts in the background with the first test
    (`_ci_workflow_run`): it overlaps every other test instead of holding the suite up for its ~8 minutes."""
    items[:] = [i for i in items if not _reads_ci_workflow(i)] + [i for i in items if _reads_ci_workflow(i)]


@pytest.fixture(scope="session", autouse=True)
def _ci_workflow_run(request, tmp_path_factory):
    """Start the default target at the ci tier in the background when a selected test reads it: niced, so the tests
    running meanwhile keep their CPU and the run takes what they leave (most of them use one core of two)."""
    if not any(_reads_ci_workflow(i) for i in request.session.items):
        yield None
        return
    from workflow import smk_cmd

    work = tmp_path_factory.mktemp("ci_workflow")
    out = tmp_path_factory.mktemp("ci_workflow_output") / "snakemake.out"
    nice = [shutil.which("nice"), "-n", "10"] if shutil.which("nice") else []
    with out.open("w") as f:
        proc = subprocess.Popen(
            [*nice, *smk_cmd(work, "--config", "tier=ci")], stdout=f, stderr=subprocess.STDOUT, start_new_session=True
        )
    yield work, out, proc
    if proc.poll() is None:  # the session ended before the run did (-x, an interrupt): the run ends with it
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()


@pytest.fixture(scope="session")
def ci_workflow(_ci_workflow_run) -> Path:
    """The default target at the ci tier (every paper, the shared benchmarks), run once for the whole session: the
    pipeline tests of several papers read it instead of each rerunning the same jobs."""
    work, out, proc = _ci_workflow_run
    try:
        returncode = proc.wait(timeout=3600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        raise
    assert returncode == 0, out.read_text()[-8000:]
    return work


@pytest.fixture(scope="session")
def ci_workflow_output(ci_workflow, _ci_workflow_run) -> str:
    """What the session's ci run printed (stdout and stderr), e.g. the summaries its aggregate rules print."""
    return _ci_workflow_run[1].read_text()


@pytest.fixture(scope="session")
def ci_model(tmp_path_factory) -> Path:
    """The ci tier's random model, prepared once per test session through the real preparation code."""
    from alignrepro.config import resolve_config
    from alignrepro.models import prepare_model

    spec = resolve_config({"tier": "ci"})["models"]["ci-random-llama"]
    out = tmp_path_factory.mktemp("models") / "ci-random-llama"
    prepare_model("ci-random-llama", spec, out)
    return out


@pytest.fixture(scope="session")
def mote_model_dirs(ci_model, tmp_path_factory):
    """Untrained-but-randomised MoTE and PEFT LoRA folders written by train.py's own saver (no Trainer: fast)."""
    import torch

    from alignrepro.io import atomic_write_json, sha256_dir
    from alignrepro.methods.mote import train as mote_train

    root = tmp_path_factory.mktemp("mote_models")
    cfg = mote_train.merged_config({"train": {"max_length": 96}, "lora": {"r": 4, "alpha": 8}, "dtype": "float32"})
    dirs = {}
    for arch in ("mote", "lora"):
        model, tok, settings = mote_train.build_model(arch, ci_model, cfg)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        out = root / arch
        fmt = mote_train.save_trained(model, tok, settings, out)
        meta = {
            "kind": "mote",
            "arch": arch,
            "adapter_format": fmt,
            "base": str(ci_model),
            "adapter": "adapter",
            "tokenizer": "tokenizer",
            "adapter_sha256": sha256_dir(out / "adapter"),
            "config": cfg,
        }
        atomic_write_json(out / "model.json", meta)
        dirs[arch] = out
    return dirs


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny ops: more threads only add contention on the shared 2-core machine."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def server(monkeypatch):
    """A loopback OpenAI-compatible server (tests/test_openai_client.py's Loopback) with a fake key set."""
    from test_openai_client import SECRET, Loopback

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)  # loopback traffic must not go through a proxy
    s = Loopback()
    yield s
    s.close()
