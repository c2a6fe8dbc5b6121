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
def ci_model(tmp_path_factory) -> Path:
    """The ci tier's random model, prepared once per test session through the real preparation code."""
    from alignrepro.config import resolve_config
    from alignrepro.models import prepare_model

    spec = resolve_config({"tier": "ci"})["models"]["ci-random-llama"]
    out = tmp_path_factory.mktemp("models") / "ci-random-llama"
    prepare_model("ci-random-llama", spec, out)
    return out
