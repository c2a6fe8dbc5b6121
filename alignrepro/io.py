"""Atomic file writes, JSONL helpers and content hashes.

Every file a rule writes goes through `atomic_write_*`: a killed job never leaves a half-written output that
Snakemake (or a reader) could mistake for a finished one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from alignrepro.errors import UserError


class DataError(UserError, ValueError):
    """A data file the project reads is malformed; the message names the file and line."""


_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; results are meant to be shared
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg})") from e
    return rows


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_dir(path: str | os.PathLike) -> str:
    """Hash of a folder's files (relative names + contents), independent of mtimes and listing order."""
    root = Path(path)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(root)).encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def stable_hash(obj: Any, length: int = 16) -> str:
    """Short hash of a JSON-able object, stable across runs and key order."""
    return sha256_text(json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str))[:length]


# Keys whose values are times, speeds, host facts or cache bookkeeping (which of two parallel jobs judged a shared
# pair first, how much a resumed job found already scored): they differ between two identical runs.
VOLATILE_KEY = re.compile(
    r"^(created_utc|timing|eps|torch_threads|cpu_flags|hostname|hits|misses|prompts_cached|prompts_scored|tstamp)$"
    r"|^seconds"
    r"|(_seconds|_runtime|_per_second|_per_s|_s|seconds_per_step\w*|_utc)$"
)


def without_volatile(obj: Any) -> Any:
    """A JSON value with every time/speed/host entry removed (see VOLATILE_KEY)."""
    if isinstance(obj, dict):
        return {k: without_volatile(v) for k, v in obj.items() if not VOLATILE_KEY.search(str(k))}
    if isinstance(obj, list):
        return [without_volatile(v) for v in obj]
    return obj


def content_sha256(path: str | os.PathLike) -> str:
    """sha256 of what a result file says, not of when it was made: JSON/JSONL without their volatile entries
    (times, speeds), so two identical runs record the same hash of each other's outputs; other files byte for byte."""
    path = Path(path)
    if path.suffix == ".json":
        return sha256_text(json.dumps(without_volatile(read_json(path)), sort_keys=True, ensure_ascii=False))
    if path.suffix == ".jsonl":
        rows = [json.dumps(without_volatile(r), sort_keys=True, ensure_ascii=False) for r in read_jsonl(path)]
        return sha256_text("\n".join(rows))
    return sha256_file(path)
