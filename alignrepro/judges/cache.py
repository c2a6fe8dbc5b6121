"""SQLite cache of pairwise judgments, shared by concurrent Snakemake jobs.

WAL mode lets readers run beside one writer; writers take short `BEGIN IMMEDIATE` transactions, wait on a busy
timeout and retry on "database is locked", so several processes can fill the same file at once.
"""

from __future__ import annotations

import json
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
from alignrepro.judges.base import Judgment, PairItem, PairwiseJudge, check_preferences, last_judgments

log = logging.getLogger(__name__)
T = TypeVar("T")
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS judgments (key TEXT PRIMARY KEY, preference REAL NOT NULL, created REAL, meta TEXT)"
)
# `meta`: the judgment's answer-token mass and truncation flag (JSON); added to caches written before it existed.
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
            self._retry(lambda: self._add_meta_column(conn))
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    @staticmethod
    def _add_meta_column(conn: sqlite3.Connection) -> None:
        if "meta" in {row[1] for row in conn.execute("PRAGMA table_info(judgments)")}:
            return
        try:
            conn.execute("ALTER TABLE judgments ADD COLUMN meta TEXT")
        except sqlite3.OperationalError as e:  # another process added it first
            if "duplicate column" not in str(e).lower():
                raise

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
        return {k: j.value for k, j in self.get_judgments(keys).items()}

    def get_judgments(self, keys: Iterable[str]) -> dict[str, Judgment]:
        keys = list(dict.fromkeys(keys))
        conn, found = self._conn_or_open(), {}
        for i in range(0, len(keys), CHUNK):
            chunk = keys[i : i + CHUNK]
            sql = f"SELECT key, preference, meta FROM judgments WHERE key IN ({','.join('?' * len(chunk))})"
            for key, value, meta in self._retry(lambda sql=sql, chunk=chunk: conn.execute(sql, chunk).fetchall()):
                m = json.loads(meta) if meta else {}
                found[key] = Judgment(float(value), m.get("answer_mass"), False, bool(m.get("truncated", False)))
        self.hits += len(found)
        self.misses += len(keys) - len(found)
        return found

    def put_many(self, prefs: dict[str, float]) -> None:
        self.put_judgments({k: Judgment(float(p)) for k, p in prefs.items()})

    def put_judgments(self, judgments: dict[str, Judgment]) -> None:
        # NaN (the judge could not decide, or an unparsable answer) is not cached, so a later run asks again.
        rows = [
            (k, float(j.value), time.time(), json.dumps({"answer_mass": j.answer_mass, "truncated": j.truncated}))
            for k, j in judgments.items()
            if not math.isnan(float(j.value)) and not j.unparsable
        ]
        conn = self._conn_or_open()
        for i in range(0, len(rows), CHUNK):
            self._retry(lambda chunk=rows[i : i + CHUNK]: self._write(conn, chunk))

    @staticmethod
    def _write(conn: sqlite3.Connection, rows: list[tuple[str, float, float, str]]) -> None:
        conn.execute("BEGIN IMMEDIATE")  # take the write lock up front: no deadlock upgrading a read lock
        try:
            sql = "INSERT OR REPLACE INTO judgments (key, preference, created, meta) VALUES (?, ?, ?, ?)"
            conn.executemany(sql, rows)
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
    """Preferences for `items`, asking the judge only for pairs the cache does not hold (see cached_judgments)."""
    return [j.value for j in cached_judgments(judge, items, cache, settings, chunk_size)]


def cached_judgments(
    judge: PairwiseJudge,
    items: list[PairItem],
    cache: JudgmentCache | None,
    settings: dict[str, Any] | None = None,
    chunk_size: int = 64,
) -> list[Judgment]:
    """Judgments (value, answer-token mass, unparsable, truncated) for `items`, asking the judge only for pairs the
    cache does not hold (no cache: all of them).

    Misses are judged and stored `chunk_size` at a time, so a crash late in a long (paid) run loses little.
    """
    if cache is None:
        if not items:
            return []
        values = check_preferences(judge.preferences(list(items)), len(items), judge.id)
        return last_judgments(judge, values)
    settings = dict(getattr(judge, "settings", {})) | dict(settings or {})  # the judge's own decoding settings count
    keys = [item_key(judge, it, settings) for it in items]
    found = cache.get_judgments(keys)
    todo: dict[str, PairItem] = {}
    for k, it in zip(keys, items, strict=True):
        if k not in found:
            todo.setdefault(k, it)
    n_hits = sum(k in found for k in keys)
    log.info("judge cache: %d hits, %d misses (%s)", n_hits, len(keys) - n_hits, judge.id)
    pending = list(todo.items())
    for i in range(0, len(pending), chunk_size):
        chunk = pending[i : i + chunk_size]
        values = check_preferences(judge.preferences([it for _, it in chunk]), len(chunk), judge.id)
        fresh = dict(zip([k for k, _ in chunk], last_judgments(judge, values), strict=True))
        cache.put_judgments(fresh)
        found.update(fresh)
    return [found[k] for k in keys]
