"""The served teacher (alignrepro.serve): a real server subprocess that the `openai` client talks to as to vLLM, and
its prefix (KV) cache, which must change no logit."""

from __future__ import annotations

import os
import socket
import time

import httpx
import openai
import pytest
import torch

from alignrepro.errors import UserError
from alignrepro.serve import Endpoint, endpoint, served

MODEL = "ci-random-llama"  # the served id: model.json's name
PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
SHARED = (
    "You are asked to come up with a set of diverse questions on a task. Follow these principles: proper grammar, "
    "safe and respectful, relevant to the task, clear, and in the same style and format as the example.\n"
    "### Example: What is 12 plus 7? The answer is 19.\n"
) * 3


@pytest.fixture(scope="module")
def teacher(ci_model, tmp_path_factory):
    """One served ci model for the module: (base URL, openai client, log path)."""
    log = tmp_path_factory.mktemp("serve") / "server.log"
    with pytest.MonkeyPatch.context() as mp:
        for var in PROXIES:  # loopback traffic must not go through a proxy
            mp.delenv(var, raising=False)
        with served(ci_model, log_path=log, timeout_s=300) as url:
            yield url, openai.OpenAI(base_url=url, api_key="unused", max_retries=0), log


def _get(url: str) -> httpx.Response:
    return httpx.get(url, trust_env=False, timeout=10)


def _tokens(ci_model, text: str) -> int:
    from alignrepro.models import load_tokenizer

    return len(load_tokenizer(ci_model)(text)["input_ids"])


def test_health_and_models(teacher):
    url, client, _ = teacher
    health = _get(url.removesuffix("/v1") + "/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.json()["pid"] != os.getpid()  # a real process of its own
    assert [m.id for m in client.models.list().data] == [MODEL]


def test_n_choices_come_in_prompt_order(teacher, ci_model):
    _, client, _ = teacher
    prompts = ["The answer is", "How many apples"]
    kw = {"model": MODEL, "max_tokens": 8, "extra_body": {"min_tokens": 8}}
    r = client.completions.create(prompt=prompts, n=3, temperature=0, **kw)
    single = [client.completions.create(prompt=p, n=1, temperature=0, **kw).choices[0].text for p in prompts]
    assert single[0] != single[1]  # distinct prompts, so the order is visible
    assert [c.index for c in r.choices] == list(range(6))
    assert [c.text for c in r.choices] == [single[0]] * 3 + [single[1]] * 3  # index = i*n + j
    assert {c.finish_reason for c in r.choices} == {"length"} and all(c.logprobs is None for c in r.choices)
    assert r.usage.prompt_tokens == sum(_tokens(ci_model, p) for p in prompts)
    assert r.usage.completion_tokens == 6 * 8 and r.usage.total_tokens == r.usage.prompt_tokens + 48

    # Sampling: seeded per request, so choices differ from each other but repeat exactly, and a prompt's choices
    # do not depend on which other prompts share its request.
    kw |= {"temperature": 1.0, "top_p": 0.95, "seed": 7}
    a = [c.text for c in client.completions.create(prompt=prompts, n=3, **kw).choices]
    b = [c.text for c in client.completions.create(prompt=prompts, n=3, **kw).choices]
    alone = [c.text for c in client.completions.create(prompt=prompts[1], n=3, **kw).choices]
    assert a == b and a[3:] == alone and len(set(a[:3])) > 1


def test_instructlab_sdg_probes_see_a_batching_server(teacher):
    """LLMBlock's server_supports_batched: GET ../ (InstructLab's llama-cpp check) then 2 prompts x n=3."""
    _, client, _ = teacher
    with pytest.raises(openai.APIStatusError):
        client.get("../", cast_to=httpx.Response)
    r = client.completions.create(model=MODEL, prompt=["test1", "test2"], max_tokens=1, n=3)
    assert len(r.choices) == 6
    r = client.completions.create(model=MODEL, prompt="x", temperature=0.0, max_tokens=4, seed=42, n=1)
    assert len(r.choices) == 1 and r.choices[0].finish_reason in ("stop", "length")


def test_stop_strings_cut_the_text(teacher):
    _, client, _ = teacher
    kw = {"model": MODEL, "prompt": "How many apples", "temperature": 0, "max_tokens": 12}
    full = client.completions.create(**kw, extra_body={"min_tokens": 12}).choices[0].text
    stop = full[5:8]
    c = client.completions.create(**kw, stop=[stop, "never there"], extra_body={"min_tokens": 12}).choices[0]
    assert c.text == full[: full.index(stop)] and c.finish_reason == "stop"


def test_chat_completions(teacher, ci_model):
    from alignrepro.models import load_tokenizer

    _, client, _ = teacher
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "How many apples?"}]
    r = client.chat.completions.create(model=MODEL, messages=messages, n=2, max_tokens=6, seed=1)
    assert [c.index for c in r.choices] == [0, 1]
    assert all(c.message.role == "assistant" and isinstance(c.message.content, str) for c in r.choices)
    text = load_tokenizer(ci_model).apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert r.usage.prompt_tokens == _tokens(ci_model, text)


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"temperature": -1}, "temperature"),
        ({"n": 0}, "n"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": "many"}, "max_tokens"),
        ({"max_tokens": 5000}, "max_tokens"),  # past the ci model's 1024-token context
        ({"seed": 1.5}, "seed"),
        ({"stop": [""]}, "stop"),
        ({"echo": True}, "echo"),
        ({"logprobs": 5}, "logprobs"),
        ({"stream": True}, "stream"),
        ({"prompt": []}, "prompt"),
    ],
)
def test_bad_fields_are_400_naming_the_field(teacher, bad, field):
    _, client, _ = teacher
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL, prompt="x", max_tokens=2, extra_body=bad)
    assert e.value.body["param"] == field and field in e.value.message


def test_other_refusals(teacher):
    _, client, _ = teacher
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.completions.create(model="gpt-4", prompt="x", max_tokens=2)
    with pytest.raises(openai.BadRequestError, match=r"messages\[0\]"):
        client.chat.completions.create(model=MODEL, messages=[{"role": "wizard", "content": "x"}], max_tokens=2)
    # Unknown optional fields are ignored, as vLLM does.
    r = client.completions.create(model=MODEL, prompt="x", max_tokens=2, extra_body={"not_a_field": 1})
    assert len(r.choices) == 1


def test_server_reuses_shared_prefixes(teacher):
    url, client, _ = teacher
    before = _get(url.removesuffix("/v1") + "/stats").json()
    tails = ["Now write a question about apples.", "Now write a question about km."]
    r1 = client.completions.create(model=MODEL, prompt=[SHARED + t for t in tails], max_tokens=3, n=2)
    r2 = client.completions.create(model=MODEL, prompt=[SHARED + "Now sort a list."], max_tokens=3)
    after = _get(url.removesuffix("/v1") + "/stats").json()
    assert after["prefix_tokens_reused"] - before["prefix_tokens_reused"] > 3 * r1.usage.prompt_tokens // 2
    assert r2.usage.prompt_tokens_details.cached_tokens > 0  # the second request starts from the first's prefix


def _engines(ci_model):
    from alignrepro.models import load_model, load_tokenizer
    from alignrepro.prefix_cache import Engine

    tok, model = load_tokenizer(ci_model), load_model(ci_model)
    return tok, model, Engine(model, tok, max_batch=8), Engine(model, tok, prefix_entries=0)


def test_prefix_cache_changes_no_logit(ci_model, one_torch_thread):
    from alignrepro.prefix_cache import Sampling

    tok, model, cached, plain = _engines(ci_model)
    tails = ["Now write one.", "Now write a question about apples and km.", "?"]
    rows = [tok(SHARED + t)["input_ids"] for t in tails]
    with torch.inference_mode():
        alone = torch.stack([model(torch.tensor([r])).logits[0, -1] for r in rows])  # no padding, no cache
    with_cache = cached.next_token_logits(rows)
    assert cached.all_stats()["prefix_tokens_reused"] > 0  # the cache was used
    assert (with_cache - alone).abs().max() <= 1e-4
    assert (plain.next_token_logits(rows) - alone).abs().max() <= 1e-4

    for s in (Sampling(16, min_tokens=16), Sampling(16, temperature=1.0, top_k=50, repetition_penalty=1.2, seed=3)):
        a, b = cached.complete(rows, 2, s), plain.complete(rows, 2, s)
        assert [c.text for c in a] == [c.text for c in b]
    stats = cached.all_stats()
    assert stats["prefix_hits"] > 0 and stats["prefix_tokens_from_lru"] > 0  # later batches start from the LRU


def test_engine_stops_between_tokens(ci_model, one_torch_thread):
    from alignrepro.prefix_cache import Cancelled, Sampling

    tok, _, cached, _ = _engines(ci_model)
    with pytest.raises(Cancelled):
        cached.complete([tok("x")["input_ids"]], 1, Sampling(8), should_stop=lambda: True)


def test_server_stops_cleanly_even_if_the_body_raises(ci_model, tmp_path, monkeypatch):
    for var in PROXIES:
        monkeypatch.delenv(var, raising=False)
    log = tmp_path / "server.log"
    with pytest.raises(RuntimeError, match="body failed"), endpoint({"backend": "local"}, ci_model, log_path=log) as ep:
        assert ep.model == MODEL
        root = ep.base_url.removesuffix("/v1")
        pid, port = _get(root + "/health").json()["pid"], int(root.rsplit(":", 1)[1])
        raise RuntimeError("body failed")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone and reaped
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    assert "shutting down" in log.read_text()  # SIGTERM's clean path, not SIGKILL


def test_a_crashing_server_is_a_user_error_with_its_log(tmp_path):
    (tmp_path / "config.json").write_text("{}")  # a folder without model.json
    with pytest.raises(UserError, match="exited with status") as e, served(tmp_path, timeout_s=120):
        pass
    assert "model.json: missing" in str(e.value)


def test_openai_spec_starts_nothing():
    spec = {"backend": "openai", "base_url": "http://gpu-node:8000/v1/", "model": "mistralai/Mixtral-8x7B"}
    with endpoint(spec) as ep:
        assert ep == Endpoint("http://gpu-node:8000/v1", "mistralai/Mixtral-8x7B")
    with pytest.raises(UserError, match="model"), endpoint({"backend": "openai", "base_url": "http://x/v1"}):
        pass


def test_a_client_that_hangs_up_stops_its_generation(teacher):
    url, _, log = teacher
    impatient = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        impatient.completions.create(
            model=MODEL, prompt=["a"] * 8, n=4, max_tokens=1000, temperature=1.0, extra_body={"min_tokens": 1000}
        )
    deadline = time.monotonic() + 30
    while "the client went away" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "the client went away" in log.read_text()  # its job stopped: a retry does not queue behind it


class _BytesTokenizer:
    chat_template = None

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": list(text.encode())}


class _EchoEngine:
    """A paper kind's engine (the interface LAB's scripted ci teacher implements): echoes each prompt per choice."""

    tok = _BytesTokenizer()
    vocab, max_len = 256, 4096

    def __init__(self, model_dir, **kw):
        self.kw = kw

    def all_stats(self):
        return {}

    def run(self, prompts, fields, max_tokens, where, should_stop):
        from alignrepro.prefix_cache import Choice

        out = [Choice(f"{bytes(p).decode()}/{j}", "stop", 1) for p in prompts for j in range(fields["n"])]
        return out, {"prompt_tokens": sum(map(len, prompts)), "completion_tokens": len(out), "total_tokens": 0}


def test_a_paper_kind_brings_its_own_engine(tmp_path, monkeypatch):
    import asyncio
    import json

    from aiohttp.test_utils import TestClient, TestServer

    from alignrepro import model_kinds, serve

    (tmp_path / "model.json").write_text(json.dumps({"kind": "echo_teacher", "name": "echo", "files": {}}))
    monkeypatch.setattr(model_kinds, "kind_object", lambda ref, role: _EchoEngine if role == "serve_engine" else None)
    teacher = serve.load_teacher(serve.parser().parse_args(["--model", str(tmp_path), "--max-batch", "3"]))
    assert teacher.name == "echo" and teacher.engine.kw["max_batch"] == 3

    async def ask():
        async with TestClient(TestServer(teacher.app())) as client:
            r = await client.post("/v1/completions", json={"model": "echo", "prompt": ["ab", "cd"], "n": 2})
            chat = await client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
            return await r.json(), chat.status, await chat.json()

    body, chat_status, chat = asyncio.run(ask())
    assert [c["text"] for c in body["choices"]] == ["ab/0", "ab/1", "cd/0", "cd/1"]
    assert chat_status == 400 and chat["error"]["param"] == "messages"  # no chat template


def test_repeated_prompts_are_computed_once(ci_model, one_torch_thread):
    # instructlab-sdg sends each knowledge chunk once per seed example: identical prompts (and so identical row
    # seeds) give identical choices, computed once, in prompt order.
    from alignrepro.prefix_cache import Sampling

    tok, _, cached, _ = _engines(ci_model)
    a, b = tok("The answer is")["input_ids"], tok("How many apples")["input_ids"]
    for temperature in (0.0, 1.0):
        s = Sampling(max_tokens=6, min_tokens=6, temperature=temperature, seed=5)
        before = cached.stats["rows"]
        got = [c.text for c in cached.complete([a, b, a, a, b], 2, s)]
        assert cached.stats["rows"] - before == (2 if temperature == 0 else 4)  # unique prompts × choices
        alone = [c.text for c in cached.complete([a, b], 2, s)]
        assert got == alone[:2] + alone[2:] + alone[:2] + alone[:2] + alone[2:]


def test_unseeded_sampling_draws_afresh_per_occurrence(ci_model, one_torch_thread):
    # vLLM without a seed samples each prompt afresh; instructlab-sdg relies on it (the MMLU-branch MCQ prompt does not
    # read the seed example: 5 identical prompts per chunk, then duplicate questions dropped). Reproducible still: the
    # k-th draw of a prompt is the same in a new server, whatever the batching.
    from alignrepro.prefix_cache import Sampling

    tok, _, cached, _ = _engines(ci_model)
    a = tok("The answer is")["input_ids"]
    s = Sampling(max_tokens=6, min_tokens=6, temperature=1.0)
    first = [c.text for c in cached.complete([a, a, a], 1, s)]
    assert len(set(first)) == 3  # three draws, not one copied
    later = [c.text for c in cached.complete([a], 1, s)]
    _, _, fresh, _ = _engines(ci_model)
    again = [c.text for c in fresh.complete([a], 1, s)] + [c.text for c in fresh.complete([a, a, a], 1, s)]
    assert again == first + later  # draws 0..3 in order, split across requests differently
    assert [c.text for c in fresh.complete([a], 1, Sampling(max_tokens=6, min_tokens=6, temperature=0.0))] == [
        c.text for c in fresh.complete([a], 1, Sampling(max_tokens=6, min_tokens=6, temperature=0.0))
    ]  # greedy: no draws
