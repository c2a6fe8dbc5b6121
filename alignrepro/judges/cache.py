"""SQLite cache of pairwise judgments, shared by concurrent Snakemake jobs.

WAL mode lets readers run beside one writer; writers take short `BEGIN IMMEDIATE` transactions, wait on a busy
timeout and retry on "database is locked", so several processes can fill the same file at once.
"""

from __future__ import annotations

import logging
import math
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from alignrepro.errors import UserError
from alignrepro.io import stable_hash
from alignrepro.judges.base import PairItem, PairwiseJudge, check_preferences

log = logging.getLogger(__name__)
T = TypeVar("T")
SCHEMA = "CREATE TABLE IF NOT EXISTS judgments (key TEXT PRIMARY KEY, preference REAL NOT NULL, created REAL)"
CHUNK = 200  # rows per statement / transaction: keeps locks short and stays under SQLite's variable limit


class JudgmentCache:
    def __init__(self, path: str | os.PathLike, timeout: float = 60.0, max_attempts: int = 50) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout, self.max_attempts = timeout, max_attempts
        self.hits = self.misses = 0
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._conn_or_open()

    @staticmethod
    def make_key(
        judge_id: str, prompt_hash: str, settings: dict[str, Any], instruction: str, output_1: str, output_2: str
    ) -> str:
        return stable_hash([judge_id, prompt_hash, settings, instruction, output_1, output_2], length=32)

    def _conn_or_open(self) -> sqlite3.Connection:
        # One connection per process: a connection inherited through fork must not be used by the child.
        if self._conn is None or self._pid != os.getpid():
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)  # we manage transactions
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            self._retry(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone())
            conn.execute("PRAGMA synchronous = NORMAL")
            self._retry(lambda: conn.execute(SCHEMA))
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def _retry(self, fn: Callable[[], T]) -> T:
        for attempt in range(self.max_attempts):
            try:
                return fn()
            except sqlite3.OperationalError as e:
                msg = str(e).lower()
                if ("locked" not in msg and "busy" not in msg) or attempt == self.max_attempts - 1:
                    raise
                time.sleep(min(1.0, 0.01 * 2**attempt) * random.random())
            except sqlite3.DatabaseError as e:  # not OperationalError: the file itself is bad (NOTADB, CORRUPT)
                # Left in place: it may be the only copy of paid judgments, or someone else's file at this path.
                raise UserError(
                    f"judgment cache {self.path} is not a readable SQLite database ({e}); it is only a cache: move it "
                    f"aside (with any {self.path.name}-wal / -shm beside it) and rerun, which judges the pairs again"
                ) from e
        raise AssertionError("unreachable")

    def get_many(self, keys: Iterable[str]) -> dict[str, float]:
        keys = list(dict.fromkeys(keys))
        conn, found = self._conn_or_open(), {}
        for i in range(0, len(keys), CHUNK):
            chunk = keys[i : i + CHUNK]
            sql = f"SELECT key, preference FROM judgments WHERE key IN ({','.join('?' * len(chunk))})"
            found.update(self._retry(lambda sql=sql, chunk=chunk: conn.execute(sql, chunk).fetchall()))
        self.hits += len(found)
        self.misses += len(keys) - len(found)
        return found

    def put_many(self, prefs: dict[str, float]) -> None:
        # NaN (the judge could not decide) is not cached, so a later run asks again.
        rows = [(k, float(p), time.time()) for k, p in prefs.items() if not math.isnan(float(p))]
        conn = self._conn_or_open()
        for i in range(0, len(rows), CHUNK):
            self._retry(lambda chunk=rows[i : i + CHUNK]: self._write(conn, chunk))

    @staticmethod
    def _write(conn: sqlite3.Connection, rows: list[tuple[str, float, float]]) -> None:
        conn.execute("BEGIN IMMEDIATE")  # take the write lock up front: no deadlock upgrading a read lock
        try:
            conn.executemany("INSERT OR REPLACE INTO judgments VALUES (?, ?, ?)", rows)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # SQLite may already have rolled back (e.g. on corruption): keep the real error
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None

    def __enter__(self) -> JudgmentCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_conn", "_pid")} | {"_conn": None, "_pid": None}


def item_key(judge: PairwiseJudge, item: PairItem, settings: dict[str, Any]) -> str:
    extra = {}
    if getattr(judge, "uses_reference", False) and item.record is not None:  # the oracle's verdict depends on it
        extra = {"reference": item.record.reference, "task": item.record.task}
    return JudgmentCache.make_key(
        judge.id, judge.prompt_hash, settings | extra, item.instruction, item.output_1, item.output_2
    )


def cached_preferences(
    judge: PairwiseJudge,
    items: list[PairItem],
    cache: JudgmentCache,
    settings: dict[str, Any] | None = None,
    chunk_size: int = 64,
) -> list[float]:
    """Preferences for `items`, asking the judge only for pairs the cache does not hold.

    Misses are judged and stored `chunk_size` at a time, so a crash late in a long (paid) run loses little.
    """
    settings = dict(getattr(judge, "settings", {})) | dict(settings or {})  # the judge's own decoding settings count
    keys = [item_key(judge, it, settings) for it in items]
    found = cache.get_many(keys)
    todo: dict[str, PairItem] = {}
    for k, it in zip(keys, items, strict=True):
        if k not in found:
            todo.setdefault(k, it)
    n_hits = sum(k in found for k in keys)
    log.info("judge cache: %d hits, %d misses (%s)", n_hits, len(keys) - n_hits, judge.id)
    pending = list(todo.items())
    for i in range(0, len(pending), chunk_size):
        chunk = pending[i : i + chunk_size]
        new = check_preferences(judge.preferences([it for _, it in chunk]), len(chunk), judge.id)
        fresh = {k: p for (k, _), p in zip(chunk, new, strict=True)}
        cache.put_many(fresh)
        found.update(fresh)
    return [float(found[k]) for k in keys]
