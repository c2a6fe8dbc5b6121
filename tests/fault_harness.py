"""Fault harness: break the ci-tier workflow the ways real runs break, and check that nothing is lost or wrong.

    .venv/bin/python tests/fault_harness.py --kills 10 --out fault_report.json     (~25-35 min on 2 cores)

Not a test (pytest does not collect it); its figures go in the README ("When something goes wrong"). Steps:
  1. reference: the whole ci DAG, uninterrupted, in a scratch folder;
  2. kills: the same DAG in another folder, `kill -9` of Snakemake and all its jobs at --kills random moments,
     each followed by a plain restart (no --unlock, no --rerun-incomplete), then run to the end; every JSON/JSONL
     file must parse and the results must equal the reference's (tests/reproducible.py: times and paths aside);
  3. disk full: a run whose file-size limit (RLIMIT_FSIZE) makes jobs fail mid-write, then a normal restart,
     which must again equal the reference;
  4. bad inputs on a copy of the finished run: a corrupted judgment cache, a truncated and a rewritten weight file,
     a deleted adapter, a garbage JSONL line, config typos and non-finite values, an endpoint answering garbage;
     each must fail naming the file / key / endpoint, without a traceback;
  5. secrets: a fake API key in the environment of every run must appear in no file written.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproducible import differences  # noqa: E402
from workflow import REPO, SNAKEMAKE  # noqa: E402

SECRET = "sk-harness-" + "7f3a9c" * 6
ENV = {**os.environ, "OPENAI_API_KEY": SECRET, "PYTHONUNBUFFERED": "1"}


def snakemake(work: Path, *args: str, preexec=None, timeout: int = 3600) -> subprocess.Popen:
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--directory", str(work), "--cores", "2"]
    cmd += ["--config", "tier=ci", *args]
    log = open(work.parent / f"{work.name}.console.log", "a")  # noqa: SIM115 (lives as long as the process)
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=ENV, start_new_session=True,
                            preexec_fn=preexec)  # fmt: skip


def run(work: Path, *args: str, preexec=None) -> int:
    return snakemake(work, *args, preexec=preexec).wait()


def running_steps(pgid: int) -> list[str]:
    """The alignrepro modules the killed run's jobs were executing (what a kill interrupted)."""
    out = subprocess.run(["ps", "-o", "pgid=,args=", "-A"], capture_output=True, text=True).stdout
    steps = []
    for line in out.splitlines():
        pg, _, cmd = line.strip().partition(" ")
        if pg == str(pgid) and " -m alignrepro." in cmd:
            steps.append(cmd.split(" -m ", 1)[1].split()[0].removeprefix("alignrepro."))
    return steps


def check_parse(root: Path) -> tuple[int, list[str]]:
    """(files checked, files that do not parse) for every JSON/JSONL the run wrote."""
    bad, n = [], 0
    for p in (root / "results").rglob("*"):
        if p.suffix not in (".json", ".jsonl") or "wandb" in p.parts:
            continue
        n += 1
        try:
            text = p.read_text()
            if p.suffix == ".json":
                json.loads(text)
            else:
                [json.loads(x) for x in text.splitlines() if x.strip()]
        except (ValueError, UnicodeDecodeError):
            bad.append(str(p))
    return n, bad


def kills(root: Path, ref: Path, n_kills: int, ref_seconds: float, rng: random.Random) -> dict:
    """Kill at n random moments of the run's own clock (time spent running, summed over restarts), spread over the
    reference run's length, so kills land in every phase: data, training saves, generation, judging, tables."""
    work = root / "killed"
    work.mkdir()
    moments = sorted(rng.uniform(5, ref_seconds) for _ in range(n_kills))
    events, ran = [], 0.0
    for i, moment in enumerate(moments):
        proc = snakemake(work)
        delay = max(3.0, moment - ran)
        try:
            proc.wait(timeout=delay)
            events.append({"kill": i, "finished_before_kill": True})
            break
        except subprocess.TimeoutExpired:
            steps = running_steps(proc.pid)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            ran += delay
            events.append({"kill": i, "at_run_s": round(ran, 1), "interrupted": steps})
    restarts_ok = 0
    proc = snakemake(work)
    rc = proc.wait()
    restarts_ok += rc == 0
    console = (root / "killed.console.log").read_text()
    checked, unparsable = check_parse(work)
    diffs, compared = differences(ref, work)
    return {
        "kills": sum("at_run_s" in e for e in events),
        "events": events,
        "final_rc": rc,
        "needed_unlock": "--unlock" in console and "cannot be locked" in console,
        "needed_rerun_incomplete": "IncompleteFilesException" in console,
        "stale_locks_removed": console.count("removed a stale Snakemake lock"),
        "json_files_checked": checked,
        "unparsable": unparsable,
        "files_compared_with_reference": compared,
        "differences": diffs,
    }


def disk_full(root: Path, ref: Path, limit_bytes: int) -> dict:
    import resource

    work = root / "diskfull"
    work.mkdir()

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes fail with EFBIG, as on a full disk

    first = run(work, preexec=small_disk)
    rc = run(work)
    diffs, compared = differences(ref, work)
    checked, unparsable = check_parse(work)
    return {"limited_run_rc": first, "restart_rc": rc, "files_compared_with_reference": compared,
            "differences": diffs, "json_files_checked": checked, "unparsable": unparsable}  # fmt: skip


def expect_failure(name: str, work: Path, needle: str, flags=(), config=(), cmd: list[str] | None = None) -> dict:
    """Run a step that must fail; report whether it did, whether it named the cause, and any traceback."""
    if cmd is None:
        cmd = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--directory", str(work), "--cores", "2", *flags]
        cmd += ["--config", "tier=ci", *config]
    started = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=work, timeout=900)
    text = proc.stdout + proc.stderr
    logs = [p for p in (work / "results").rglob("*.log") if p.stat().st_mtime >= started - 1]
    log_text = "".join(p.read_text(errors="replace") for p in logs)
    return {
        "case": name,
        "rc": proc.returncode,
        "failed": proc.returncode != 0,
        "names_cause": needle in text or needle in log_text,
        "traceback": "Traceback" in text or "Traceback" in log_text,
    }


class _Garbage(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b"<html>502 upstream hiccup</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def bad_inputs(root: Path, ref: Path) -> list[dict]:
    cases = []

    def fresh(name: str) -> Path:
        work = root / f"bad-{name}"
        shutil.copytree(ref, work, symlinks=True)
        return work

    work = fresh("cache")
    (work / "results/judge_cache.sqlite").write_bytes(b"garbage, not a database" * 100)
    cases.append(expect_failure("corrupted judgment cache", work, "judge_cache.sqlite", ["--forcerun", "eval_winrate"]))

    for how in ("truncated", "rewritten", "deleted"):
        work = fresh(how)
        weights = next(work.glob("results/cut/ci/models/*/ilf_dpo/adapter/adapter_model.safetensors"))
        data = weights.read_bytes()
        if how == "truncated":
            weights.write_bytes(data[: len(data) // 3])
        elif how == "rewritten":
            weights.write_bytes(data[:-16] + b"\x00" * 16)
        else:
            weights.unlink()
        cases.append(expect_failure(f"{how} adapter weights", work, "adapter_model.safetensors", ["-n"]))

    work = fresh("jsonl")
    responses = work / "results/cut/ci/online/iter1/responses.jsonl"
    responses.write_text(responses.read_text() + "{not json\n")
    cases.append(expect_failure("garbage JSONL line", work, "responses.jsonl", ["--forcerun", "cut_judge"]))

    work = root / "bad-config"
    work.mkdir()
    for name, value, needle in [
        ("non-finite learning rate", "cut={train: {learning_rate: .inf}}", "cut.train.learning_rate"),
        ("NaN learning rate", "mote={train: {train: {learning_rate: .nan}}}", "learning_rate"),
        ("typo in a paper section", "morlaif={ppo: {stpes: 3}}", "stpes"),
        ("negative layers", "models={ci-random-llama: {layers: -1}}", "layers"),
        ("unknown judge backend", "evals={judge: {backend: hf}}", "backend"),
    ]:
        cases.append(expect_failure(name, work, needle, ["-n"], [value]))

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    prompts = work / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "p1", "instruction": "Say hi.", "input": ""}) + "\n")
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    spec = json.dumps({"backend": "openai", "model": "harness-model", "base_url": url})
    cmd = [sys.executable, "-m", "alignrepro.generation", "--prompts", str(prompts), "--out", str(work / "o.jsonl")]
    cases.append(expect_failure("endpoint answering HTML", work, url, cmd=[*cmd, "--spec-json", spec]))
    server.shutdown()
    return cases


def secrets(root: Path) -> dict:
    hits, scanned = [], 0
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            scanned += 1
            with open(p, "rb") as f:
                if SECRET.encode() in f.read():
                    hits.append(str(p))
    return {"files_scanned": scanned, "files_with_secret": hits}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=10, help="kill -9 moments in the kill run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fsize-limit", type=int, default=150_000, help="bytes per file in the disk-full run")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folders")
    ap.add_argument("--out", type=Path, default=Path("fault_report.json"))
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="alignrepro-faults-"))
    report: dict = {"root": str(root), "seed": args.seed}
    t0 = time.time()
    ref = root / "reference"
    ref.mkdir()
    rc = run(ref)
    report["reference"] = {"rc": rc, "seconds": round(time.time() - t0)}
    if rc != 0:
        raise SystemExit(f"reference run failed: see {root}/reference.console.log")
    print(f"reference run: {report['reference']}", flush=True)
    report["kill_run"] = kills(root, ref, args.kills, report["reference"]["seconds"], rng)
    print(f"kill run: {json.dumps(report['kill_run'])[:600]}", flush=True)
    report["disk_full"] = disk_full(root, ref, args.fsize_limit)
    print(f"disk full: {report['disk_full']}", flush=True)
    report["bad_inputs"] = bad_inputs(root, ref)
    for c in report["bad_inputs"]:
        print(f"bad input: {c}", flush=True)
    report["secrets"] = secrets(root)
    report["seconds"] = round(time.time() - t0)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("secrets", "seconds")}, indent=2))
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
