"""The served teacher: an OpenAI-compatible HTTP server for a project model folder, as InstructLab serves its teacher.

`python -m alignrepro.serve --model DIR --port 0 --port-file FILE` serves /health, /v1/models, /v1/completions and
/v1/chat/completions on 127.0.0.1 (aiohttp for HTTP, alignrepro.prefix_cache for the model). `served(model_dir)`
runs it as a real subprocess for the length of a `with` block; `endpoint(spec)` gives the same client path a vLLM
server (`vllm serve`) running elsewhere at the full tier.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from aiohttp import web

from alignrepro.errors import UserError
from alignrepro.io import atomic_write_json, read_json
from alignrepro.prefix_cache import Cancelled, RequestError, number, sampling_fields

log = logging.getLogger(__name__)


def check_model(body: Any, served_name: str) -> dict:
    if not isinstance(body, dict):
        raise RequestError(None, "the request body must be a JSON object")
    if body.get("model") is not None and body["model"] != served_name:
        raise RequestError("model", f"the model `{body['model']}` does not exist (served: {served_name!r})", 404)
    return body


def parse_prompts(body: dict, vocab: int) -> list[str | list[int]]:
    """`prompt` as OpenAI takes it: a string, a list of strings, a token list or a list of token lists."""
    p = body.get("prompt")
    if isinstance(p, str) or (isinstance(p, list) and p and all(isinstance(t, int) for t in p)):
        p = [p]
    ok = isinstance(p, list) and p and all(isinstance(x, str) or isinstance(x, list) and x for x in p)
    if not ok:
        raise RequestError("prompt", "expected a string, a list of strings or token lists (non-empty)")
    for x in p:
        bad = isinstance(x, list) and not all(
            isinstance(t, int) and not isinstance(t, bool) and 0 <= t < vocab for t in x
        )
        if bad:
            raise RequestError("prompt", f"token ids must be integers in [0, {vocab})")
    return p


def parse_messages(body: dict) -> list[dict[str, str]]:
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise RequestError("messages", "expected a non-empty list of {role, content} objects")
    out = []
    for i, m in enumerate(msgs):
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):  # OpenAI content parts: only text parts here
            if not all(
                isinstance(c, dict) and c.get("type") == "text" and isinstance(c.get("text"), str) for c in content
            ):
                raise RequestError(f"messages[{i}].content", "only text content parts are supported")
            content = "".join(c["text"] for c in content)
        if (
            not isinstance(m, dict)
            or m.get("role") not in ("system", "user", "assistant")
            or not isinstance(content, str)
        ):
            raise RequestError(f"messages[{i}]", "expected {role: system|user|assistant, content: string}")
        out.append({"role": m["role"], "content": content})
    return out


# ------------------------------------------------------------------------------------------------------- server
class Teacher:
    """The aiohttp app around an Engine. Generation runs on one worker thread, one request at a time, so /health
    answers while the model works; shutdown stops a running generation between two tokens."""

    def __init__(self, engine: Any, name: str):
        self.engine, self.name = engine, name
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="teacher")
        self.stopping = threading.Event()
        self.requests = 0

    def app(self):
        app = web.Application(client_max_size=64 << 20, middlewares=[self._errors])
        app.router.add_get("/health", self.health)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/stats", self.stats)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/chat/completions", self.chat)
        return app

    @staticmethod
    def _error(status: int, message: str, param: str | None = None):
        kind = {400: "BadRequestError", 404: "NotFoundError", 503: "ServiceUnavailableError"}.get(status, "ServerError")
        err = {"message": message, "type": kind, "param": param, "code": status}
        return web.json_response({"error": err, "object": "error", **err}, status=status)

    @property
    def _errors(self):
        @web.middleware
        async def middleware(request, handler):
            try:
                return await handler(request)
            except RequestError as e:
                return self._error(e.status, str(e), e.param)
            except json.JSONDecodeError as e:
                return self._error(400, f"the request body is not JSON ({e})")
            except web.HTTPException:
                raise
            except Exception as e:  # a 500 with the cause, never a dropped connection
                log.exception("request failed")
                return self._error(500, f"{type(e).__name__}: {e}")

        return middleware

    async def health(self, request):
        return web.json_response({"status": "ok", "model": self.name, "pid": os.getpid()})

    async def models(self, request):
        card = {"id": self.name, "object": "model", "created": 0, "owned_by": "alignrepro"}
        card["max_model_len"] = self.engine.max_len  # as vLLM reports it
        return web.json_response({"object": "list", "data": [card]})

    async def stats(self, request):
        return web.json_response({"requests": self.requests, **self.engine.all_stats()})

    async def completions(self, request):
        body = check_model(await request.json(), self.name)
        fields, prompts = sampling_fields(body), parse_prompts(body, self.engine.vocab)
        max_tokens = number(body, "max_tokens", 16, 1, integer=True)  # vLLM's default for completions

        def encode():
            return [p if isinstance(p, list) else self.engine.tok(p)["input_ids"] for p in prompts]

        choices, usage = await self._run(request, encode, fields, max_tokens, "prompt")
        out = [{"index": k, "text": c.text, "logprobs": None, **self._finish(c)} for k, c in enumerate(choices)]
        return self._response("cmpl", "text_completion", out, usage)

    async def chat(self, request):
        body = check_model(await request.json(), self.name)
        fields, messages = sampling_fields(body), parse_messages(body)
        max_tokens = number(body, "max_completion_tokens", None, 1, integer=True)
        max_tokens = number(body, "max_tokens", max_tokens, 1, integer=True)

        def encode():
            if not self.engine.tok.chat_template:
                raise RequestError("messages", "the served model has no chat template: use /v1/completions")
            text = self.engine.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return [self.engine.tok(text, add_special_tokens=False)["input_ids"]]  # the template holds BOS

        choices, usage = await self._run(request, encode, fields, max_tokens, "messages")
        out = [
            {"index": k, "message": {"role": "assistant", "content": c.text}, "logprobs": None, **self._finish(c)}
            for k, c in enumerate(choices)
        ]
        return self._response("chatcmpl", "chat.completion", out, usage)

    @staticmethod
    def _finish(c) -> dict[str, Any]:
        return {"finish_reason": c.finish_reason, "stop_reason": c.stop_reason}

    async def _run(self, request, encode, fields: dict, max_tokens: int | None, where: str):
        def gone() -> bool:  # shutting down, or the client hung up (a timed-out client retries: drop the old job)
            return self.stopping.is_set() or request.transport is None or request.transport.is_closing()

        def job():  # tokenizing too runs on the worker thread: the tokenizer is not shared across threads
            return self.engine.run(encode(), fields, max_tokens, where, gone)

        self.requests += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, job)
        except Cancelled as e:
            why = "the server is shutting down" if self.stopping.is_set() else "the client went away"
            log.warning("generation stopped: %s", why)
            raise RequestError(None, why, 503) from e

    def _response(self, prefix: str, obj: str, choices: list, usage: dict):
        head = {"id": f"{prefix}-{uuid.uuid4().hex}", "object": obj, "created": int(time.time()), "model": self.name}
        return web.json_response({**head, "choices": choices, "usage": usage})


def load_teacher(args: argparse.Namespace) -> Teacher:
    import torch

    from alignrepro.model_kinds import kind_object
    from alignrepro.models import choose_dtype, load_model, load_tokenizer, read_model_meta
    from alignrepro.prefix_cache import Engine

    if args.threads:
        torch.set_num_threads(args.threads)
    meta = read_model_meta(args.model)
    name = args.served_model_name or meta.get("name") or Path(args.model).resolve().name
    kw = {"max_batch": args.max_batch, "prefix_entries": args.prefix_entries}
    # A paper's model kind may bring its own engine (same interface as Engine: tok, vocab, max_len, run, all_stats),
    # e.g. LAB's scripted ci teacher.
    paper_engine = kind_object(args.model, "serve_engine")
    if paper_engine is not None:
        log.info("serving %s as %r with %s", args.model, name, paper_engine.__name__)
        return Teacher(paper_engine(args.model, dtype=args.dtype, **kw), name)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    tok = load_tokenizer(args.model, padding_side="left")
    model = load_model(args.model, dtype=choose_dtype(args.dtype)).to(device)
    engine = Engine(model, tok, **kw)
    log.info("serving %s as %r on %s (%s, max_len %d)", args.model, name, device, model.dtype, engine.max_len)
    return Teacher(engine, name)


async def serve(args: argparse.Namespace) -> None:
    teacher = load_teacher(args)  # before listening: a server that answers /health can generate
    runner = web.AppRunner(teacher.app())
    await runner.setup()
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    site = web.SockSite(runner, sock, shutdown_timeout=5)
    await site.start()
    port = sock.getsockname()[1]
    url = f"http://{args.host}:{port}/v1"
    if args.port_file:
        atomic_write_json(args.port_file, {"port": port, "base_url": url, "pid": os.getpid(), "model": teacher.name})
    log.info("listening on %s", url)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    watch = asyncio.create_task(_watch_parent(args.parent_pid, done)) if args.parent_pid else None
    await done.wait()
    log.info("shutting down")
    teacher.stopping.set()  # a running generation ends at its next token
    if watch:
        watch.cancel()
    await runner.cleanup()
    teacher.pool.shutdown(wait=True, cancel_futures=True)
    if args.port_file:
        Path(args.port_file).unlink(missing_ok=True)


async def _watch_parent(pid: int, done: asyncio.Event) -> None:
    # A parent killed outright (SIGKILL) cannot stop us: leave when it is gone rather than stay an orphan.
    while os.getppid() == pid:
        await asyncio.sleep(1.0)
    log.warning("parent process %d is gone", pid)
    done.set()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m alignrepro.serve",
        description="Serve a model folder (with model.json) as an OpenAI-compatible HTTP server (completions, chat).",
    )
    p.add_argument("--model", type=Path, required=True, help="model folder with model.json")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 = pick a free port (see --port-file)")
    p.add_argument("--port-file", type=Path, help="written atomically once listening: {port, base_url, pid, model}")
    p.add_argument("--dtype", default="float32", help="float32, bfloat16 or auto")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    p.add_argument("--max-batch", type=int, default=8, help="rows (prompt x choice) per forward pass")
    p.add_argument("--prefix-entries", type=int, default=4, help="prompt prefixes kept in the KV cache (0 = off)")
    p.add_argument("--served-model-name", help="model id clients send (default: model.json's name)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--parent-pid", type=int, help="exit when this parent process is gone")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    asyncio.run(serve(args))


# ------------------------------------------------------------------------------------------------- clients' side
def _get_json(url: str, timeout: float = 5.0) -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback never goes through a proxy
    with opener.open(url, timeout=timeout) as r:
        return json.loads(r.read())


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def served(
    model_dir: str | Path,
    *,
    dtype: str = "float32",
    log_path: str | Path | None = None,
    timeout_s: float = 600,
    max_batch: int = 8,
    name: str | None = None,
    extra_args: list[str] | tuple[str, ...] = (),
) -> Iterator[str]:
    """Serve `model_dir` in a subprocess on 127.0.0.1 for the `with` block; yields its base URL (…/v1). Fails with
    a UserError holding the log's tail if the server dies or is not healthy within `timeout_s`; on exit, however the
    block ends, the server is stopped (SIGTERM, then SIGKILL) and reaped."""
    with tempfile.TemporaryDirectory(prefix="alignrepro-serve-") as tmp:
        port_file = Path(tmp) / "port.json"
        log_file = Path(log_path) if log_path else Path(tmp) / "server.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "alignrepro.serve", "--model", str(model_dir), "--host", "127.0.0.1"]
        cmd += ["--port", "0", "--port-file", str(port_file), "--dtype", dtype, "--max-batch", str(max_batch)]
        cmd += ["--parent-pid", str(os.getpid()), *(["--served-model-name", name] if name else []), *extra_args]
        with open(log_file, "ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            shown = log_file if log_path else "(deleted with its server)"
            url = _wait_healthy(proc, port_file, shown, log_file, model_dir, timeout_s)
            yield url
        finally:
            stop(proc)


def _wait_healthy(proc: subprocess.Popen, port_file: Path, shown, log_file: Path, model_dir, timeout_s) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise UserError(
                f"teacher server for {model_dir} exited with status {proc.returncode} before it was ready; "
                f"its log {shown} ends:\n{_tail(log_file)}"
            )
        if port_file.is_file():
            url = read_json(port_file)["base_url"]
            with contextlib.suppress(OSError, ValueError):
                if _get_json(url.removesuffix("/v1") + "/health", timeout=2).get("status") == "ok":
                    return url
        if time.monotonic() > deadline:
            raise UserError(
                f"teacher server for {model_dir} not healthy after {timeout_s:.0f}s; "
                f"its log {shown} ends:\n{_tail(log_file)}"
            )
        time.sleep(0.2)


def stop(proc: subprocess.Popen, grace_s: float = 20) -> None:
    """SIGTERM, wait, then SIGKILL; always reaped."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            log.warning("teacher server %d ignored SIGTERM for %.0fs: killing it", proc.pid, grace_s)
            proc.kill()
    proc.wait()


class Endpoint(NamedTuple):
    base_url: str  # …/v1, for openai.OpenAI(base_url=…)
    model: str  # the model id requests name


@contextlib.contextmanager
def endpoint(spec: dict[str, Any], model_dir: str | Path | None = None, **served_kw: Any) -> Iterator[Endpoint]:
    """The teacher's endpoint for a generation spec: `{backend: openai, base_url, model}` is a server running
    elsewhere (vLLM at the full tier), used as it is; `{backend: local}` serves `model_dir` for the block."""
    backend = spec.get("backend", "local")
    if backend == "openai":
        missing = [k for k in ("base_url", "model") if not spec.get(k)]
        if missing:
            raise UserError(f"teacher spec with backend openai needs {' and '.join(missing)} (got {spec})")
        yield Endpoint(spec["base_url"].rstrip("/"), spec["model"])
        return
    if backend != "local":
        raise UserError(f"teacher spec backend {backend!r}: expected local or openai")
    if model_dir is None:
        raise UserError("teacher spec with backend local needs a model folder")
    kw = {"dtype": spec.get("dtype", "float32"), "max_batch": spec.get("max_batch", 8), **served_kw}
    with served(model_dir, **kw) as url:
        yield Endpoint(url, _get_json(url + "/models")["data"][0]["id"])


if __name__ == "__main__":
    main()
