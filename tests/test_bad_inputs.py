"""Bad inputs end in a UserError naming the file / endpoint / key and what was expected, never in a stray traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from test_openai_client import SECRET, completion, make_client

from alignrepro.errors import UserError
from alignrepro.judges.base import PairItem
from alignrepro.judges.cache import JudgmentCache, cached_preferences, item_key
from alignrepro.judges.grading import grade_key
from alignrepro.judges.openai_api import OpenAIChatClient, OpenAIPairwiseJudge, public_url

HI = [{"role": "user", "content": "hi"}]


# --- 1. an OpenAI-compatible endpoint that answers something other than a chat completion ----------------------
@pytest.mark.parametrize(
    ("headers", "body", "expect"),
    [
        ({"Content-Type": "text/html"}, b"<html>proxy login</html>", "not JSON"),
        ({"Content-Type": "text/html"}, f"<p>echo: Bearer {SECRET}</p>".encode(), "echo: Bearer <key>"),
        ({}, b"{not json", "not JSON"),  # a JSON content type over a broken body
        ({}, {"choices": []}, "empty 'choices'"),
        ({}, {"error": {"message": "upstream overloaded"}}, "upstream overloaded"),
        ({}, [1, 2], "not a JSON object"),
        ({}, {"choices": [{"index": 0}]}, "no message"),
    ],
)
def test_malformed_answer_names_endpoint_after_retries(server, headers, body, expect):
    client, sleeps = make_client(server, max_retries=2)
    server.script = [(200, headers, body, 0)] * 3
    with pytest.raises(UserError) as info:
        client.chat(HI, max_tokens=5)
    msg = str(info.value)
    assert server.url in msg and expect in msg and "expected a chat completion" in msg and "after 3 attempt" in msg
    assert SECRET not in msg
    assert (client.n_attempts, client.n_retries, len(sleeps)) == (3, 2, 2)  # retried like a 5xx
    assert client.prompt_tokens == 0 and client.dollars == 0.0  # nothing counted for an answer that was not one
    assert isinstance(info.value, RuntimeError)  # callers that caught the old RuntimeError still do


def test_malformed_answer_then_good_one_succeeds(server):
    client, _ = make_client(server)
    server.script = [(200, {}, {"choices": []}, 0), (200, {"Content-Type": "text/plain"}, b"oops", 0)]
    assert client.chat(HI, max_tokens=5)["text"] == completion()["choices"][0]["message"]["content"]
    assert (client.n_requests, client.n_attempts, client.n_retries) == (1, 3, 2)


def test_failed_request_names_endpoint(server):
    client, _ = make_client(server)
    server.script = [(400, {}, {"error": {"message": "bad request"}}, 0)]
    with pytest.raises(UserError, match=f"{server.url}.*after 1 attempt"):
        client.chat(HI, max_tokens=5)


def test_endpoint_is_written_without_credentials(monkeypatch):
    assert public_url("HTTPS://user:pw@Host.Example:443/v1/?api-key=abc#x") == "https://host.example/v1"
    assert public_url("http://[::1]:8000/v1") == "http://[::1]:8000/v1"
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    client = OpenAIChatClient("http://user:pw@127.0.0.1:9/v1?key=abc", "m")  # connects lazily: nothing is sent
    assert client.endpoint == "http://127.0.0.1:9/v1"
    for text in (repr(client), str(client.describe())):
        assert "pw" not in text and "abc" not in text and SECRET not in text


def test_missing_key_is_a_user_error(monkeypatch):
    monkeypatch.delenv("ALIGNREPRO_TEST_KEY", raising=False)
    with pytest.raises(UserError, match="ALIGNREPRO_TEST_KEY"):
        OpenAIChatClient("http://127.0.0.1:9/v1", "m", api_key_env="ALIGNREPRO_TEST_KEY")


# --- 2. a judgment cache overwritten with garbage -------------------------------------------------------------
def test_corrupted_cache_names_the_file_and_is_left_alone(tmp_path):
    path = tmp_path / "judge_cache.sqlite"
    garbage = b"this is not a database\n" * 200
    path.write_bytes(garbage)
    with pytest.raises(UserError) as info:
        JudgmentCache(path)
    msg = str(info.value)
    assert str(path) in msg and "not a readable SQLite database" in msg and "move it aside" in msg
    assert path.read_bytes() == garbage  # the user's file is never deleted or rewritten


def test_cache_corrupted_inside_names_the_file(tmp_path):
    path = tmp_path / "judge_cache.sqlite"
    with JudgmentCache(path) as cache:
        cache.put_many({f"k{i}": 1.5 for i in range(500)})
    data = bytearray(path.read_bytes())
    assert len(data) > 3 * 4096 and not (tmp_path / "judge_cache.sqlite-wal").exists()  # all checkpointed
    data[4096:] = b"\xff" * (len(data) - 4096)  # header and schema intact, the table's pages garbage
    path.write_bytes(bytes(data))
    cache = JudgmentCache(path)  # opens fine: only page 1 is read
    with pytest.raises(UserError, match="judge_cache.sqlite.*not a readable SQLite database"):
        cache.get_many(["k1", "k499"])


# --- 3. a prompts file that is empty, missing or malformed ----------------------------------------------------
@pytest.mark.parametrize(
    ("content", "expect"),
    [
        ("", "no records"),
        ("\n  \n", "no records"),
        ('{"id": "a", "instruction": "x"}\n{"id": "b", "input": "y"}\n', "record 2: missing required field"),
        ('{"id": "a", "instruction": "x"}\n{"id": "b", "instruction": 3}\n', "record 2: field 'instruction'"),
        ('{"id": "a", "instruction": "x"}\n{"id": \n', ":2: not valid JSON"),
        ('["a", "b"]\n', "record 1 is a JSON list"),
    ],
)
def test_bad_prompts_file_names_it(tmp_path, content, expect):
    from alignrepro import generation

    path = tmp_path / "prompts.jsonl"
    path.write_text(content)
    with pytest.raises(UserError) as info:
        generation.main(["--prompts", str(path), "--out", str(tmp_path / "out.jsonl")])
    assert str(path) in str(info.value) and expect in str(info.value)
    assert "expected" in str(info.value)
    assert not (tmp_path / "out.jsonl").exists()


def test_missing_prompts_file_names_it(tmp_path):
    from alignrepro.generation import load_prompts

    with pytest.raises(UserError, match=f"{tmp_path / 'nope.jsonl'}: no such file"):
        load_prompts(tmp_path / "nope.jsonl")
    ok = tmp_path / "ok.jsonl"
    ok.write_text('{"id": "a", "instruction": "x"}\n\n{"id": "b", "instruction": "y", "input": "z"}\n')
    assert [r.prompt_text for r in load_prompts(ok)] == ["x", "y\nz"]


# --- 4. the cache key of an OpenAI judge covers its endpoint --------------------------------------------------
def _judge(monkeypatch, base_url):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)  # the SDK's default endpoint must be the official one
    return OpenAIPairwiseJudge(OpenAIChatClient(base_url, "gpt-4-0613"))


def test_cache_key_includes_endpoint(monkeypatch, tmp_path):
    item = PairItem("instr", "a", "b")
    msgs = [{"role": "user", "content": "rate this"}]

    def keys(base_url):
        j = _judge(monkeypatch, base_url)
        return item_key(j, item, dict(j.settings)), grade_key(j, "rate", msgs)

    a = keys("http://127.0.0.1:8000/v1")
    assert a == keys("http://127.0.0.1:8000/v1/") == keys("HTTP://user:pw@127.0.0.1:8000/v1")  # same endpoint
    assert a[0] != keys("http://127.0.0.1:8001/v1")[0] and a[1] != keys("http://127.0.0.1:8001/v1")[1]
    official = keys(None)
    assert official == keys("https://api.openai.com/v1") and official[0] != a[0]
    # The official endpoint keeps the key it had before endpoints were part of it: paid judgments stay cached.
    j = _judge(monkeypatch, None)
    old_settings = {k: v for k, v in j.settings.items() if k != "endpoint"}
    assert "endpoint" not in j.settings
    assert official[0] == JudgmentCache.make_key(j.id, j.prompt_hash, old_settings, "instr", "a", "b")

    # Through the cache: another provider's same model name is judged again, the same one is not.
    cache = JudgmentCache(tmp_path / "c.sqlite")
    calls = []
    for url in ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1/", "http://127.0.0.1:8001/v1"):
        j = _judge(monkeypatch, url)
        j.preferences = lambda items, url=url: calls.append(url) or [1.0] * len(items)
        cached_preferences(j, [item], cache)
    assert calls == ["http://127.0.0.1:8000/v1", "http://127.0.0.1:8001/v1"]


# --- 5. the excepthook: one line, status 2, no traceback ------------------------------------------------------
def test_user_error_exits_2_with_one_line(tmp_path):
    prompts = tmp_path / "empty_prompts.jsonl"
    prompts.write_text("")
    env = {k: v for k, v in os.environ.items() if k != "ALIGNREPRO_TRACEBACK"}
    proc = subprocess.run(
        [sys.executable, "-m", "alignrepro.generation", "--prompts", str(prompts), "--out", str(tmp_path / "o.jsonl")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "alignrepro: error:" in proc.stderr and "empty_prompts.jsonl" in proc.stderr
    assert "Traceback" not in proc.stderr
