"""The final summary printed after a successful run (alignrepro/run_summary.py, the Snakefile's onsuccess hook)."""

import io
import re
from pathlib import Path

import pytest

from alignrepro import run_summary


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # lines are cut to the terminal's width: the tests choose it


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def full_run(root: Path) -> None:
    """What a finished default target leaves: papers' summaries, the leaderboard, claims, logs, benchmarks."""
    cut = (
        "CUT at tier ci (ci-random-llama):\n  base 0.0% -> CUT 0.0%\n  online: Base 0.0%\n  tables: table2_offline.md\n"
    )
    write(root, "results/cut/ci/tables/summary.md", cut)
    write(
        root, "results/mote/ci/tables/summary.md", "# MoTE summary (tier ci)\n\njudge `h`\n\n- SFT: Help 1.5\n- RLCD\n"
    )
    board = "Shared leaderboard (ci): 3 models\n  ranked by MMLU\n\n| rank | model |\n|---|---|\n| 1 | base/x |\n"
    write(root, "results/evals/ci/summary.md", board + "| 2 | cut/y |\n")
    write(root, "results/claims/ci/claims.md", "| paper | claim | verdict |\n")
    for folder in ("results/cut/ci/logs", "results/mote/ci/logs", "results/logs", "results/cut/ci/benchmarks"):
        (root / folder).mkdir(parents=True, exist_ok=True)


def test_a_full_run_names_every_paper_the_leaderboard_claims_and_logs(tmp_path):
    full_run(tmp_path)
    lines = run_summary.render(tmp_path, ["cut", "morlaif", "mote"], "ci")
    text = "\n".join(lines)
    assert lines[0] == "alignrepro: run summary (tier ci)"
    assert "  cut: tables in results/cut/ci/tables/" in lines
    # the summary's first three non-empty lines, below its paper; its fourth is left out
    i = lines.index("  cut: tables in results/cut/ci/tables/")
    assert lines[i + 1 : i + 4] == ["    CUT at tier ci (ci-random-llama):", "      base 0.0% -> CUT 0.0%",
                                    "      online: Base 0.0%"]  # fmt: skip
    assert "table2_offline.md" not in text
    # Markdown heading marks and blank lines dropped
    i = lines.index("  mote: tables in results/mote/ci/tables/")
    assert lines[i + 1 : i + 4] == ["    MoTE summary (tier ci)", "    judge `h`", "    - SFT: Help 1.5"]
    assert "morlaif" not in text  # configured but not built: no line, no error
    assert "  leaderboard: results/evals/ci/summary.md" in lines
    assert "    | 2 | cut/y |" in lines and "      ranked by MMLU" in lines
    assert "  claims and verdicts: results/claims/ci/claims.md" in lines
    assert "  logs: results/{cut,mote}/ci/logs/, results/logs/" in lines
    assert "  benchmarks (run times): results/cut/ci/benchmarks/" in lines
    assert len(lines) <= run_summary.MAX_LINES


def test_papers_come_in_the_configured_order_and_only_configured_ones(tmp_path):
    full_run(tmp_path)
    text = "\n".join(run_summary.render(tmp_path, ["mote", "cut"], "ci"))
    assert text.index("  mote: ") < text.index("  cut: ")
    assert "  cut: " not in "\n".join(run_summary.render(tmp_path, ["mote"], "ci"))


def test_a_registered_summary_target_is_used_and_the_tables_one_wins(tmp_path):
    write(tmp_path, "results/lab/ci/tables/summary.md", "LAB main\n")
    write(tmp_path, "results/lab/ci/tables/ablation/summary.md", "LAB ablation\n")
    write(tmp_path, "elsewhere/x/summary.md", "moved summary\n")
    targets = {
        "lab": [["results/lab/ci/tables/table3.md", "results/lab/ci/tables/ablation/summary.md"],
                ["results/lab/ci/tables/summary.md"]],
        "cut": "elsewhere/x/summary.md",
    }  # fmt: skip
    lines = run_summary.render(tmp_path, ["lab", "cut"], "ci", targets)
    assert lines[1:3] == ["  lab: tables in results/lab/ci/tables/", "    LAB main"]
    assert lines[3:5] == ["  cut: tables in elsewhere/x/", "    moved summary"]


def test_a_run_of_one_target_prints_what_exists_and_no_other_file(tmp_path):
    (tmp_path / "results/logs").mkdir(parents=True)
    lines = run_summary.render(tmp_path, ["cut", "mote"], "tiny")
    assert lines == [
        "alignrepro: run summary (tier tiny)",
        "  no paper summary, leaderboard or claims table exists yet",
        "  logs: results/logs/",
    ]
    assert run_summary.render(tmp_path / "nowhere", ["cut"], "tiny")[1:] == [
        "  no paper summary, leaderboard or claims table exists yet"
    ]


def test_other_tiers_are_not_mixed_in(tmp_path):
    full_run(tmp_path)
    assert run_summary.render(tmp_path, ["cut", "mote"], "tiny") == [
        "alignrepro: run summary (tier tiny)",
        "  no paper summary, leaderboard or claims table exists yet",
        "  logs: results/logs/",  # the tier-free one (base models, judges)
    ]


def test_long_lines_are_cut_and_the_whole_stays_short(tmp_path):
    papers = [f"p{i}" for i in range(30)]
    for p in papers:
        write(tmp_path, f"results/{p}/ci/tables/summary.md", "x" * 500 + "\nsecond\nthird\nfourth\n")
        (tmp_path / f"results/{p}/ci/logs").mkdir()
    lines = run_summary.render(tmp_path, papers, "ci")
    assert len(lines) == run_summary.MAX_LINES
    assert lines[2] == "    " + "x" * (run_summary.WIDTH - 5) + "…"
    assert len(lines[2]) == run_summary.WIDTH
    assert re.fullmatch(r"  \.\.\. \d+ more lines in the files above", lines[-2])
    assert lines[-1].startswith("  logs: results/{p0,p1,")  # the footer survives the cut


def test_report_prints_the_summary_and_never_raises(tmp_path, monkeypatch):
    full_run(tmp_path)
    out = io.StringIO()
    assert run_summary.report(["cut"], "ci", None, root=tmp_path, stream=out) is True
    assert out.getvalue().startswith("alignrepro: run summary (tier ci)\n  cut: tables in results/cut/ci/tables/\n")

    # an unreadable summary (a folder where the file should be), then any error: one line, no exception
    (tmp_path / "results/mote/ci/tables/summary.md").unlink()
    (tmp_path / "results/mote/ci/tables/summary.md").mkdir()
    write(tmp_path, "results/mote/ci/tables/summary.md/x", "")
    monkeypatch.setattr(run_summary, "paper_summary", lambda *a: Path("results/mote/ci/tables/summary.md"))
    out = io.StringIO()
    assert run_summary.report(["mote"], "ci", None, root=tmp_path, stream=out) is False
    assert out.getvalue().count("\n") == 1
    assert out.getvalue().startswith("alignrepro: no run summary (IsADirectoryError: ")
    assert out.getvalue().rstrip().endswith("the run itself succeeded")

    closed = io.StringIO()
    closed.close()
    assert run_summary.report(["cut"], "ci", None, root=tmp_path, stream=closed) is False


def test_the_engine_imports_no_paper():
    source = Path(run_summary.__file__).read_text()
    assert not re.search(r"^\s*(from|import)\s+\S*methods", source, re.M)


def test_the_hook_calls_the_engine_and_catches_its_errors():
    snakefile = (Path(run_summary.__file__).resolve().parents[1] / "Snakefile").read_text()
    hook = snakefile.split("\nonsuccess:\n", 1)[1]
    assert 'run_summary.report(config["papers"], TIER, PAPER_TARGETS)' in hook
    assert "except Exception" in hook


class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_live_progress_at_a_terminal_and_the_plain_log_elsewhere(monkeypatch):
    """profiles/default turns the rich logger on at a terminal only: a redirect, CI and the tests (whose output is
    parsed: job_stats, "Nothing to be done") get Snakemake's plain log, as does --nocolor."""
    from snakemake.profiles import ProfileConfigFileParser

    profile = Path(run_summary.__file__).resolve().parents[1] / "profiles/default/config.yaml"

    def parsed(tty: bool, argv: list[str]) -> dict:
        monkeypatch.setattr("sys.stderr", _Stream(tty))
        monkeypatch.setattr("sys.argv", ["snakemake", *argv])
        with profile.open() as f:
            return dict(ProfileConfigFileParser().parse(f))

    assert parsed(True, ["--cores", "2"])["logger"] == ["rich"]
    assert "logger" not in parsed(False, ["--cores", "2"])
    assert "logger" not in parsed(True, ["--cores", "2", "--nocolor"])
    assert parsed(False, [])["show-failed-logs"] == "True"  # the other settings stay on either way


def test_summary_lines_fit_a_narrow_terminal(tmp_path, monkeypatch):
    full_run(tmp_path)
    monkeypatch.setenv("COLUMNS", "30")
    lines = run_summary.render(tmp_path, ["cut"], "ci")
    assert "    CUT at tier ci (ci-random…" in lines
    assert all(len(line) <= 30 for line in lines if line.startswith("    "))
    assert "  cut: tables in results/cut/ci/tables/" in lines  # paths are never cut
