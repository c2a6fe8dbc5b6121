import os
import subprocess
import sys
from pathlib import Path

import pytest

from alignrepro import cli
from alignrepro.errors import UserError, user_message


def test_help_lists_every_step(capsys):
    cli.main(["--help"])
    out = capsys.readouterr().out
    assert all(step in out for step in cli.all_steps())


@pytest.mark.parametrize("step", list(cli.all_steps()))
def test_every_step_has_help(step, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([step, "--help"])
    assert e.value.code == 0 and "usage:" in capsys.readouterr().out


def test_unknown_step_is_an_error_naming_it():
    with pytest.raises(SystemExit, match="unknown step 'trian'"):
        cli.main(["trian"])


# --- bad input: one line naming the file or argument and what was expected, exit 2, no traceback -------------------
ALIGNREPRO = Path(sys.executable).parent / "alignrepro"


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "ALIGNREPRO_TRACEBACK"} | {"HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [str(ALIGNREPRO), *args], capture_output=True, text=True, cwd=cwd, env=base | (env or {}), timeout=300
    )


def bad_inputs(tmp: Path) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (arguments, what the one line must say)."""
    (tmp / "bad.jsonl").write_text('{"question_id": 81, "category": "writing"}\n{"question_id": \n')
    (tmp / "prompts.jsonl").write_text('{"id": "a", "instruction": "hi"}\n')
    (tmp / "no_kind").mkdir()
    (tmp / "no_kind" / "model.json").write_text('{"name": "x"}')
    heuristic = ["--judge-config", '{"backend": "heuristic"}', "--out", str(tmp / "o.json")]
    gen = ["generate", "--prompts", str(tmp / "prompts.jsonl"), "--out", str(tmp / "o.jsonl")]
    return {
        "missing file": (
            ["mtbench-grade", "--answers", "nope.jsonl", *heuristic],
            ["--answers nope.jsonl", "no such file", "expected"],
        ),
        "malformed JSONL line": (
            ["mtbench-grade", "--answers", str(tmp / "bad.jsonl"), *heuristic],
            ["bad.jsonl:2: not valid JSON"],
        ),
        "missing judge config": (
            ["mtbench-grade", "--answers", str(tmp / "prompts.jsonl"), "--judge-config", "j.yaml", "--out", "o"],
            ["--judge-config: 'j.yaml'", "neither a JSON object nor an existing file"],
        ),
        "missing outputs file": (
            ["winrate", "--model-outputs", "m.json", "--reference-outputs", "r.json", *heuristic],
            ["m.json: no such file", "expected an outputs file", "model_outputs.json"],
        ),
        "no model folder": (
            [*gen, "--model", "no-such-model"],
            ["--model 'no-such-model': no such folder", "a PEFT adapter folder"],
        ),
        "model.json without kind": (
            [*gen, "--model", str(tmp / "no_kind")],
            ["no_kind/model.json: no 'kind' field", "expected"],
        ),
        "hub id offline": (
            [*gen, "--model", "no-org/no-model"],
            ["--model 'no-org/no-model'", "not in the local HF cache"],
        ),
        "unknown tier": (
            ["evaluate", "--model", "x", "--tier", "bogus", "--out-dir", "e"],
            ["--tier 'bogus'", "expected one of ci, tiny, full"],
        ),
        "adapter base without model": (
            [*gen, "--base", "x"],
            ["--base/--prompt-template", "--model, which is missing"],
        ),
    }


def test_bad_inputs_end_in_one_line_naming_the_file_or_argument(tmp_path):
    for name, (args, expect) in bad_inputs(tmp_path).items():
        proc = run_cli(*args, cwd=tmp_path)
        assert proc.returncode == 2, (name, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr, (name, proc.stderr[-2000:])
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("alignrepro: error: ") and all(e in last for e in expect), (name, last)


def test_debug_shows_the_traceback(tmp_path):
    args = ["mtbench-grade", "--answers", "nope.jsonl", "--judge-config", '{"backend": "heuristic"}', "--out", "o"]
    for proc in (
        run_cli("--debug", *args, cwd=tmp_path),
        run_cli(*args, cwd=tmp_path, env={"ALIGNREPRO_TRACEBACK": "1"}),
    ):
        assert proc.returncode == 1 and "Traceback" in proc.stderr and "UserError: --answers nope.jsonl" in proc.stderr


def test_file_errors_of_the_os_name_the_file():
    assert (
        user_message(FileNotFoundError(2, "No such file or directory", "/x/y.json"))
        == "/x/y.json: no such file or folder"
    )
    assert user_message(IsADirectoryError(21, "Is a directory", "/x")) == "/x: a folder, expected a file"
    assert user_message(UserError("f: bad")) == "f: bad"
    assert user_message(ValueError("a bug")) is None and user_message(FileNotFoundError("no filename")) is None


def test_model_options_are_resolved_only_where_they_name_models(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr("alignrepro.external.resolve_model", lambda v, **kw: seen.append((v, kw)) or tmp_path / "ref")
    assert cli.prepare_args("generate", ["--model=m", "--base", "b", "--prompts", "p"]) == [
        f"--model={tmp_path / 'ref'}",
        "--prompts",
        "p",
    ]
    assert seen == [("m", {"option": "--model", "base": "b", "prompt_template": None})]
    seen.clear()
    assert cli.prepare_args("evaluate", ["--model", "m", "--base", "b"]) == ["--model", "m", "--base", "b"]  # its own
    assert cli.prepare_args("winrate", ["--model-outputs", "m"]) == ["--model-outputs", "m"] and seen == []
    paper_step = next(s for s in cli.all_steps() if s not in cli.STEPS)
    cli.prepare_args(paper_step, ["--base", "b", "--policy", "p", "--out", "o"])
    assert [(v, kw["option"]) for v, kw in seen] == [("b", "--base"), ("p", "--policy")]
