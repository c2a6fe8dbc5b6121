"""OpenAI client against a loopback HTTP server: retries, Retry-After, budget, key hygiene, and the ranking judge."""

from __future__ import annotations

import json
import logging
import pickle
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from test_winrate import _pair_files

from alignrepro.evals.alpacaeval import winrate
from alignrepro.judges.openai_api import OpenAIChatClient, RequestBudgetExceeded, parse_ranking

SECRET = "sk-test-SECRET123"
RANK_1 = "[{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'rank': 2}]"


def completion(text: str = RANK_1, logprobs: dict | None = None) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4-0613",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
                "logprobs": logprobs,
            }
        ],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
    }


class Loopback:
    """Scripted chat-completions server on 127.0.0.1: pops (status, headers, body, delay) per request; a bytes body
    is sent as it is (a malformed answer), anything else as JSON."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict, dict | list | bytes, float]] = []
        self.requests: list[dict] = []
        srv = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                srv.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                status, headers, payload, delay = srv.script.pop(0) if srv.script else (200, {}, completion(), 0)
                time.sleep(delay)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for k, v in {"Content-Type": "application/json", **headers}.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client timed out and hung up
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def make_client(server: Loopback, **kw) -> tuple[OpenAIChatClient, list[float]]:
    sleeps: list[float] = []
    kw = {"timeout": 5.0, "sleep": sleeps.append} | kw
    return OpenAIChatClient(server.url, "gpt-4-0613", **kw), sleeps


def test_retries_429_honouring_retry_after(server):
    server.script = [(429, {"Retry-After": "0"}, {"error": {"message": "slow down"}}, 0)]
    client = OpenAIChatClient(server.url, "gpt-4-0613", price_per_1k_input=0.03, price_per_1k_output=0.06)
    out = client.chat([{"role": "user", "content": "hi"}], max_tokens=100)
    assert out["text"] == RANK_1 and out["top_logprobs"] is None
    assert out["usage"] == {"prompt_tokens": 100, "completion_tokens": 20}
    assert (client.n_requests, client.n_attempts, client.n_retries) == (1, 2, 1)
    assert client.dollars == pytest.approx(0.1 * 0.03 + 0.02 * 0.06)
    assert len(server.requests) == 2 and server.requests[0]["path"] == "/v1/chat/completions"
    assert server.requests[1]["body"]["max_tokens"] == 100 and server.requests[1]["auth"] == f"Bearer {SECRET}"


def test_retry_after_value_5xx_and_timeouts(server):
    client, sleeps = make_client(server, timeout=0.3)
    server.script = [(429, {"Retry-After": "7"}, {}, 0), (503, {}, {}, 0), (200, {}, completion(), 1.0)]
    client.chat([{"role": "user", "content": "hi"}], max_tokens=5)
    # Retry-After wins; without it: base * 2**attempt with jitter in [1/2, 1] of that (attempts counted from 0)
    assert client.n_retries == 3 and sleeps[0] == 7.0 and 1.0 <= sleeps[1] <= 2.0
    assert 2.0 <= sleeps[2] <= 4.0  # the timed-out attempt was retried too


def test_gives_up_after_max_retries_and_not_on_client_errors(server):
    client, sleeps = make_client(server, max_retries=2)
    server.script = [(500, {"Retry-After": "0"}, {}, 0)] * 3
    with pytest.raises(RuntimeError, match="after 3 attempt"):
        client.chat([{"role": "user", "content": "hi"}], max_tokens=5)
    assert (client.n_attempts, client.n_retries) == (3, 2)
    server.script = [(400, {}, {"error": {"message": "bad request"}}, 0)]
    with pytest.raises(RuntimeError, match="after 1 attempt"):
        client.chat([{"role": "user", "content": "hi"}], max_tokens=5)


def test_request_budget_and_logprobs(server):
    client, _ = make_client(server, max_requests=1)
    top = [{"token": "m", "logprob": -0.1, "bytes": [109]}, {"token": "M", "logprob": -2.3, "bytes": [77]}]
    server.script = [
        (
            200,
            {},
            completion("m", {"content": [{"token": "m", "logprob": -0.1, "bytes": [109], "top_logprobs": top}]}),
            0,
        )
    ]
    out = client.chat([{"role": "user", "content": "hi"}], max_tokens=1, logprobs=True, top_logprobs=5)
    assert out["top_logprobs"] == [{"m": -0.1, "M": -2.3}] and server.requests[0]["body"]["top_logprobs"] == 5
    with pytest.raises(RequestBudgetExceeded, match="max_requests=1"):
        client.chat([{"role": "user", "content": "hi"}], max_tokens=1)
    assert len(server.requests) == 1


def test_missing_key_env_names_the_variable(monkeypatch):
    monkeypatch.delenv("ALIGNREPRO_TEST_KEY", raising=False)
    with pytest.raises(RuntimeError, match="ALIGNREPRO_TEST_KEY"):
        OpenAIChatClient(None, "gpt-4-0613", api_key_env="ALIGNREPRO_TEST_KEY")


def test_parse_ranking():
    assert parse_ranking(RANK_1) == 1.0
    assert parse_ranking("[{'model': 'model_1', 'rank': 2}, {'model': 'model_2', 'rank': 1}]") == 2.0
    assert parse_ranking('Sure! [{"model": "model_2", "rank": 1}, {"model": "model_1", "rank": 2}]') == 2.0
    assert parse_ranking("I cannot decide.") != parse_ranking("I cannot decide.")  # NaN


def test_key_never_written_or_logged(server, tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)  # the SDK's and httpx's debug logs included
    server.script = [(429, {"Retry-After": "0"}, {}, 0)]
    _pair_files(tmp_path)
    spec = {"backend": "openai", "model": "gpt-4-0613", "base_url": server.url, "max_requests": 20}
    winrate.main(
        [
            "--model-outputs",
            str(tmp_path / "model.jsonl"),
            "--reference-outputs",
            str(tmp_path / "ref.jsonl"),
            "--judge-config",
            json.dumps(spec),
            "--cache",
            str(tmp_path / "c.sqlite"),
            "--out",
            str(tmp_path / "wr.json"),
        ]
    )
    out = json.loads((tmp_path / "wr.json").read_text())
    assert out["judge_ids"] == ["openai:gpt-4-0613"] and out["groups"]["all"]["usage"]["n_retries"] == 1
    assert out["win_rate"] == 50.0  # the server always ranks position 1 first: both orders cancel out
    # 3 judged items x 2 orders + 1 retry (the 4th pair is identical: a tie, never sent)
    assert len(server.requests) == 7 and server.requests[-1]["auth"] == f"Bearer {SECRET}"
    assert "HTTP Request" in caplog.text or "Request options" in caplog.text  # debug logging was really on
    captured = capsys.readouterr()
    (tmp_path / "captured.log").write_text(caplog.text + captured.out + captured.err)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) >= 4
    for p in written:
        assert SECRET.encode() not in p.read_bytes(), p
    assert SECRET not in caplog.text + captured.out + captured.err
    client = OpenAIChatClient(server.url, "gpt-4-0613")
    assert SECRET not in repr(client) and SECRET.encode() not in pickle.dumps(client)
    assert SECRET not in json.dumps(client.describe())
