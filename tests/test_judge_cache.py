"""Judgment cache: hits after a restart, NaN not cached, and two writer processes at once."""

from __future__ import annotations

import logging
import multiprocessing as mp
import sqlite3

from alignrepro.judges.base import PairItem
from alignrepro.judges.cache import JudgmentCache, cached_preferences


class CountingJudge:
    id = "fake:counting"
    prompt_hash = "p0"
    heuristic = False
    settings = {"temperature": 0.0}

    def __init__(self) -> None:
        self.calls: list[int] = []

    def preferences(self, items):
        self.calls.append(len(items))
        return [2.0 if len(it.output_2) > len(it.output_1) else 1.0 for it in items]


ITEMS = [PairItem(f"instr {i}", "a" * i, "b" * (5 - i)) for i in range(5)]


def test_cache_hits_after_restart(tmp_path, caplog):
    path = tmp_path / "judge.sqlite"
    judge = CountingJudge()
    with caplog.at_level(logging.INFO, logger="alignrepro.judges.cache"):
        first = cached_preferences(judge, ITEMS, JudgmentCache(path), {})
    assert judge.calls == [5] and "judge cache: 0 hits, 5 misses" in caplog.text

    restarted = JudgmentCache(path)  # a new process would open the file just like this
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="alignrepro.judges.cache"):
        again = cached_preferences(judge, ITEMS + [PairItem("new", "x", "yy")], restarted, {})
    assert again[:5] == first and again[5] == 2.0
    assert judge.calls == [5, 1]  # only the new pair was judged
    assert "judge cache: 5 hits, 1 misses" in caplog.text
    assert (restarted.hits, restarted.misses) == (5, 1)
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_cache_key_covers_judge_prompt_and_settings(tmp_path):
    cache = JudgmentCache(tmp_path / "c.sqlite")
    judge = CountingJudge()
    cached_preferences(judge, ITEMS, cache, {"max_tokens": 100})
    cached_preferences(judge, ITEMS, cache, {"max_tokens": 50})  # other decoding settings: a different judgment
    judge.prompt_hash = "p1"
    cached_preferences(judge, ITEMS, cache, {"max_tokens": 100})
    assert judge.calls == [5, 5, 5]
    k = JudgmentCache.make_key("j", "p", {"a": 1, "b": 2}, "i", "o1", "o2")
    assert k == JudgmentCache.make_key("j", "p", {"b": 2, "a": 1}, "i", "o1", "o2")
    assert k != JudgmentCache.make_key("j", "p", {"a": 1, "b": 2}, "i", "o2", "o1")  # order matters


def test_nan_is_not_cached(tmp_path):
    cache = JudgmentCache(tmp_path / "c.sqlite")
    cache.put_many({"a": 1.5, "b": float("nan")})
    assert cache.get_many(["a", "b"]) == {"a": 1.5}
    assert (cache.hits, cache.misses) == (1, 1)


def _writer(path: str, prefix: str, n: int, start) -> None:
    start.wait(10)  # both processes write at the same moment
    cache = JudgmentCache(path, timeout=10)
    for i in range(0, n, 10):  # many short transactions interleave with the other process's
        cache.put_many({f"{prefix}-{j}": 1.0 + (j % 3) / 2 for j in range(i, i + 10)})
        cache.get_many([f"{prefix}-{i}"])
    cache.close()


def test_two_writer_processes(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(path, p, 300, start)) for p in ("A", "B")]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=60)
        if p.is_alive():  # never leave a hung child behind
            p.kill()
    assert [p.exitcode for p in procs] == [0, 0]
    keys = [f"{p}-{j}" for p in ("A", "B") for j in range(300)]
    got = JudgmentCache(path).get_many(keys)
    assert len(got) == 600 and got["B-299"] == 1.0 + (299 % 3) / 2


def test_judgment_details_round_trip_and_old_caches_open(tmp_path):
    """The answer-token mass and truncation flag are stored with a judgment; an unparsable one is never stored; a
    cache file written before these were recorded gains the column and its judgments read back without them."""
    from alignrepro.judges.base import Judgment

    cache = JudgmentCache(tmp_path / "c.sqlite")
    cache.put_judgments({"a": Judgment(1.75, 0.8, False, True), "b": Judgment(float("nan"), 0.1, True)})
    got = cache.get_judgments(["a", "b"])
    assert got == {"a": Judgment(1.75, 0.8, False, True)}

    old = tmp_path / "old.sqlite"
    conn = sqlite3.connect(old)
    conn.execute("CREATE TABLE judgments (key TEXT PRIMARY KEY, preference REAL NOT NULL, created REAL)")
    conn.execute("INSERT INTO judgments VALUES ('k', 1.25, 0.0)")
    conn.commit()
    conn.close()
    reopened = JudgmentCache(old)
    assert reopened.get_judgments(["k"]) == {"k": Judgment(1.25)} and reopened.get_many(["k"]) == {"k": 1.25}
    reopened.put_judgments({"n": Judgment(2.0, 0.9)})
    assert reopened.get_judgments(["n"])["n"].answer_mass == 0.9
