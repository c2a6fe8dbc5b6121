"""What a result says, not when it was made: content hashes and run comparisons ignore times, speeds and cache
bookkeeping, and nothing else (the fault harness found provenance hashes of timestamped JSON files)."""

from __future__ import annotations

import json

from reproducible import differences

from alignrepro.io import content_sha256


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def test_content_hash_ignores_times_and_bookkeeping_but_not_data(tmp_path):
    base = {"weights": [0.5, 1.5], "provenance": {"created_utc": "2026-12-07T12:00:00", "seed": 42}}
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    _write(a, base | {"stats": {"prompts_cached": 0, "prompts_scored": 12, "seconds_scoring": 3.1}})
    _write(b, {**base, "provenance": {**base["provenance"], "created_utc": "2026-12-08T09:30:00"}}
           | {"stats": {"prompts_cached": 12, "prompts_scored": 0, "seconds_scoring": 0.2}})  # fmt: skip
    _write(c, {**base, "weights": [0.5, 1.25]})
    assert content_sha256(a) == content_sha256(b) != content_sha256(c)
    lines = tmp_path / "x.jsonl"
    lines.write_text('{"id": 1, "tokens_per_s": 9.5}\n{"id": 2}\n')
    same = tmp_path / "y.jsonl"
    same.write_text('{"id": 1, "tokens_per_s": 3.0}\n\n{"id": 2}\n')
    assert content_sha256(lines) == content_sha256(same)


def test_run_comparison_reports_real_differences_only(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for root, t, acc in ((a, 1.0, "50.0"), (b, 9.0, "50.0")):
        _write(root / "results/p/ci/scores.json", {"accuracy": 0.5, "timing": {"eval_s": t}, "path": str(root)})
        (root / "results/p/ci/table.csv").write_text(f"method,accuracy,train_seconds\nx,{acc},{t}\n")
        (root / "results/p/ci/logs").mkdir()
        (root / "results/p/ci/logs/job.log").write_text(f"took {t}")
    assert differences(a, b, "p") == ([], 2)
    (b / "results/p/ci/table.csv").write_text("method,accuracy,train_seconds\nx,51.0,9.0\n")
    assert differences(a, b, "p") == (["results/p/ci/table.csv"], 2)
