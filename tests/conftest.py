"""Shared fixtures. Every test runs offline: no hub, W&B offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def ci_workflow(tmp_path_factory) -> Path:
    """The default target at the ci tier (every paper, the shared benchmarks), run once for the whole session: the
    pipeline tests of several papers read it instead of each rerunning the same jobs."""
    from workflow import smk

    work = tmp_path_factory.mktemp("ci_workflow")
    res = smk(work, "--config", "tier=ci")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    return work


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
