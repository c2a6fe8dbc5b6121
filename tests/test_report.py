"""`snakemake --report`: the tier of the last run is reused, every table is an HTML page, every item has a caption
that names its tier, its judges with their card agreement and the heuristic warning; plots name their judge. The
report of the session's ci run is checked in its HTML (a normal test) and in headless Chromium (marked `browser`:
skipped when no chromium binary is found)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from alignrepro import last_run, report_pages, report_screenshot  # noqa: E402
from alignrepro.errors import UserError  # noqa: E402
from alignrepro.reporting import judge_footer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

HEURISTIC_CARD = {"name": "heuristic", "judge_id": "HEURISTIC-length-v1", "heuristic": True,
                  "pairwise": {"agreement": 52.5, "ci95": [43.6, 61.2], "n": 120}}  # fmt: skip
ORACLE_CARD = {"name": "oracle", "judge_id": "oracle-v1", "heuristic": False,
               "pairwise": {"agreement": 100.0, "ci95": [91.2, 100.0], "n": 40}}  # fmt: skip


def write_card(tmp_path: Path, card: dict) -> Path:
    path = tmp_path / f"{card['name']}.json"
    path.write_text(json.dumps(card))
    return path


# ------------------------------------------------------------------------------------------------ tier recording
@pytest.mark.parametrize(
    ("argv", "report_only"),
    [
        (["snakemake", "--report", "report.html"], True),
        (["snakemake", "--report=r.zip", "--cores", "1"], True),
        (["snakemake", "--report"], True),
        (["snakemake", "--cores", "2"], False),
        (["snakemake", "-n"], False),
        (["snakemake", "--cores", "2", "--report", "r.html", "--report-after-run"], False),
        (["snakemake", "--report-stylesheet", "s.css", "--cores", "2"], False),
    ],
)
def test_report_only_invocations(argv, report_only):
    assert last_run.is_report_only(argv) is report_only


def test_report_uses_the_recorded_tier_unless_one_is_given(tmp_path):
    record = tmp_path / "results/last_run.json"
    report = ["snakemake", "--report", "report.html"]
    assert last_run.tier_for_report(report, {}, record) is None  # no run yet: the config's tier stays
    last_run.record("ci", record)
    assert json.loads(record.read_text())["tier"] == "ci"
    assert last_run.tier_for_report(report, {}, record) == "ci"
    assert last_run.tier_for_report(report, {"tier": "tiny"}, record) is None  # --config/--configfile tier wins
    assert last_run.tier_for_report(["snakemake", "--cores", "2"], {}, record) is None  # a run never reads it
    record.write_text("not json")
    assert last_run.tier_for_report(report, {}, record) is None


# ------------------------------------------------------------------------------------------------ pages and facts
MD = """# Table 2 analogue

Judges: open = `HEURISTIC-length-v1`. <script>alert(1)</script>

| method | win rate % |
|---|---|
| CUT | 61.0 [55.1, 66.6] |
| Base | 50.0 |
"""


def test_page_renders_markdown_tables_as_html_tables_under_the_facts(tmp_path):
    facts = report_pages.load_facts("ci", [write_card(tmp_path, HEURISTIC_CARD), write_card(tmp_path, ORACLE_CARD)])
    page = report_pages.page(MD, "results/cut/ci/tables/table2_offline.md", facts)
    assert page.count("<table>") == 1 and "<th>win rate %</th>" in page and "<td>61.0 [55.1, 66.6]</td>" in page
    assert "<title>Table 2 analogue</title>" in page and "<h1>Table 2 analogue</h1>" in page
    assert "<script>alert" not in page and "&lt;script&gt;" in page  # raw HTML in a table file is escaped
    assert page.index('class="facts"') < page.index("<table>")
    assert "tier <code>ci</code>" in page
    assert "<code>HEURISTIC-length-v1</code>" in page and "52.5 % [43.6, 61.2], n=120" in page
    assert "<code>oracle-v1</code>" in page and "100.0 % [91.2, 100.0], n=40" in page
    assert '<p class="warning">⚠ HEURISTIC-length-v1 is a HEURISTIC judge' in page


def test_facts_rst_is_a_list_with_the_warning_only_for_a_heuristic(tmp_path):
    from docutils.core import publish_parts

    def html(cards):
        rst = report_pages.load_facts("tiny", [write_card(tmp_path, c) for c in cards]).rst()
        return publish_parts(rst, writer="html", settings_overrides={"halt_level": 2})["body"]

    both = html([HEURISTIC_CARD, ORACLE_CARD])
    assert both.startswith("<ul") and 'literal">tiny<' in both
    assert "HEURISTIC-length-v1" in both and "52.5 % [43.6, 61.2], n=120" in both and "oracle-v1" in both
    assert 'class="admonition warning"' in both and "is a HEURISTIC judge" in both
    oracle = html([ORACLE_CARD])
    assert "oracle-v1" in oracle and "warning" not in oracle
    assert report_pages.NO_JUDGE in html([])  # a judge-free table says so


def test_cli_writes_pages_and_facts_and_names_a_broken_card(tmp_path):
    md = tmp_path / "t.md"
    md.write_text(MD)
    card = write_card(tmp_path, ORACLE_CARD)
    report_pages.main(["--tier", "ci", "--cards", str(card), str(card), "--facts", str(tmp_path / "f.rst"),
                       "--page", str(md), str(tmp_path / "t.html")])  # fmt: skip
    assert "<table>" in (tmp_path / "t.html").read_text()
    assert (tmp_path / "f.rst").read_text().count("- judge:") == 1  # a card given twice is named once
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x"}')
    with pytest.raises(UserError, match="bad.json"):
        report_pages.main(["--tier", "ci", "--cards", str(bad), "--facts", str(tmp_path / "g.rst")])


# ------------------------------------------------------------------------------------------------ plot footers
def test_judge_footer_names_the_judge_and_the_heuristic_warning_inside_the_figure():
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(["a", "b"], [1, 2])
    ax.set_xticks([0, 1], ["a long tick label", "another one"], rotation=30)
    text = judge_footer(fig, ["judge `HEURISTIC-length-v1` (card `heuristic`: pairwise agreement 52.5 %)"], True)
    fig.tight_layout()
    fig.canvas.draw()
    label = fig.get_supxlabel()
    assert "HEURISTIC-length-v1" in label and "`" not in label and "mean nothing" in label
    assert matplotlib.colors.same_color(text.get_color(), "firebrick")
    box, ticks = text.get_window_extent(), ax.get_xaxis().get_tightbbox(fig.canvas.get_renderer())
    assert box.y0 >= 0 and box.y1 <= ticks.y0 + 1  # inside the figure and below the tick labels
    plt.close(fig)
    fig, _ = plt.subplots()
    judge_footer(fig, ["`oracle-v1` (verifiable prompts)"])
    assert fig.get_supxlabel() == "judge oracle-v1 (verifiable prompts)"  # no warning without a heuristic
    plt.close(fig)


# ------------------------------------------------------------------------------------------------ captions
REPORT_CALL = re.compile(r"report\(\s*(f?\"[^\"]+\")(?P<args>[^()]*(?:\{[^{}]*\}[^()]*)*)\)", re.S)


def report_flags() -> list[tuple[Path, str, str]]:
    """(rules file, path pattern, the call's arguments) of every `report(...)` flag in the workflow's rules."""
    files = [REPO / "Snakefile", *sorted(REPO.glob("rules/*.smk")), *sorted(REPO.glob("methods/*/rules.smk")),
             *sorted(REPO.glob("evals/**/*.smk"))]  # fmt: skip
    return [(f, m.group(1), m.group("args")) for f in files for m in REPORT_CALL.finditer(f.read_text())]


def test_every_report_item_is_a_page_or_image_with_a_caption_that_includes_its_facts():
    flags = report_flags()
    assert len(flags) >= 20
    for rules_file, path, args in flags:
        where = f"{rules_file.relative_to(REPO)}: {path}"
        assert path.rstrip('"').endswith((".html", ".png")), f"{where}: the report shows only HTML and images"
        caption = re.search(r'caption="([^"]+)"', args)
        assert caption, f"{where}: no caption"
        for key in ("category=", "subcategory=", "labels="):
            assert key in args, f"{where}: no {key}"
        text = (rules_file.parent / caption.group(1)).read_text()
        assert ".. include:: {{ snakemake.output.facts }}" in text, f"{where}: the caption does not name its facts"


class _Output(list):
    """Snakemake's output list: by index and by name."""

    def __getattr__(self, name):
        return f"results/x/ci/tables/{name}.out"


def test_every_caption_renders_as_snakemake_renders_it(tmp_path, monkeypatch):
    from docutils.core import publish_parts
    from jinja2 import Environment

    monkeypatch.chdir(tmp_path)
    facts = Path("results/x/ci/tables/facts.out")
    facts.parent.mkdir(parents=True)
    facts.write_text(report_pages.load_facts("ci", [write_card(tmp_path, HEURISTIC_CARD)]).rst())
    snakemake = type("S", (), {"output": _Output(f"results/x/ci/tables/{i}.md" for i in range(8)),
                               "wildcards": type("W", (), {"paper": "cut", "name": "heuristic"})(),
                               "config": {"tier": "ci", "papers": ["cut"], "seed": 0,
                                          "evals": {"leaderboard": {"rank_by": "mmlu_acc"}}}})  # fmt: skip
    env = Environment(trim_blocks=True, lstrip_blocks=True)  # as snakemake.report renders captions
    captions = {rules_file.parent / re.search(r'caption="([^"]+)"', args).group(1) for rules_file, _, args in
                report_flags()} | {REPO / "report/workflow.rst"}  # fmt: skip
    for caption in sorted(captions):
        rst = env.from_string(caption.read_text()).render(snakemake=snakemake)
        body = publish_parts(rst, writer="html", settings_overrides={"halt_level": 2})["body"]
        if caption.name != "workflow.rst":
            assert "HEURISTIC-length-v1" in body and "52.5 %" in body, caption  # the included facts
        assert "{{" not in body and "System Message" not in body, caption


# ------------------------------------------------------------------------------------------------ the ci run's report
CATEGORIES = {"CUT", "MORLAIF", "MoTE", "LD-Align", "LAB", "Shared benchmarks", "All papers"}
TABLES = [
    "results/cut/ci/tables/table2_offline.html",
    "results/cut/ci/tables/table6_online.html",
    "results/cut/ci/tables/claims.html",
    "results/morlaif/ci/tables/figures.html",
    "results/mote/ci/tables/tables.html",
    "results/ld_align/ci/tables/main.html",
    "results/ld_align/ci/tables/guide.html",
    "results/lab/ci/tables/table3.html",
    "results/lab/ci/tables/phases.html",
    "results/evals/ci/leaderboard.html",
    "results/judges/heuristic.html",
    "results/judges/oracle.html",
    "results/claims/ci/claims.html",
]


def report_json(page: str, name: str):
    return json.loads(re.search(rf'<script id="{name}">\s*var {name} = (.*?);\s*</script>', page, re.S).group(1))


@pytest.fixture(scope="module")
def ci_report(ci_workflow) -> Path:
    """`snakemake --report report.html` after the session's ci run, exactly as the README says it: no tier given."""
    from workflow import smk

    assert json.loads((ci_workflow / "results/last_run.json").read_text())["tier"] == "ci"
    proc = smk(ci_workflow, "--report", "report.html", timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return ci_workflow / "report.html"


def test_report_after_a_ci_run_renders_every_table_with_its_caption(ci_report):
    page = ci_report.read_text()
    results, categories = report_json(page, "results"), report_json(page, "categories")
    assert set(categories) >= CATEGORIES
    assert set(TABLES) <= set(results), sorted(set(TABLES) - set(results))
    for path, item in results.items():
        assert 'tier: <tt class="docutils literal">ci</tt>' in item["caption"], path  # the facts' tier
        assert "judge" in item["caption"], path  # a judge with its card agreement, or "judge-free"
        assert item["mime_type"] in ("text/html", "image/png"), path
        if item["mime_type"] == "text/html":
            html = base64.b64decode(item["data_uri"].split("base64,", 1)[1]).decode()
            assert "<table>" in html and "tier <code>ci</code>" in html, path
    for path in ("results/evals/ci/leaderboard.html", "results/evals/ci/leaderboard.png", TABLES[0]):
        caption = results[path]["caption"]
        assert "HEURISTIC-length-v1" in caption and "pairwise agreement" in caption and "mean nothing" in caption
    assert "warning" not in results["results/ld_align/ci/tables/main.html"]["caption"]  # judge-free: no warning
    assert report_pages.NO_JUDGE in results["results/ld_align/ci/tables/main.html"]["caption"]
    front = json.loads(re.search(r"var workflow_desc = (.*?);\n", page).group(1))
    assert 'tier <tt class="docutils literal">ci</tt>' in front and "mean nothing" in front


@pytest.mark.slow
@pytest.mark.browser
def test_report_renders_in_headless_chromium(ci_report, tmp_path):
    chromium = report_screenshot.find_chromium()
    if chromium is None:
        pytest.skip("no chromium binary on PATH (or $CHROMIUM): `apt-get install chromium` to run the browser test")
    item = "results/evals/ci/leaderboard.html"
    dom = report_screenshot.rendered_dom(ci_report, item, chromium)
    assert 'data-missing-item="' not in dom  # the item exists in the report (else the script marks <body>)
    shown = dom.split('id="app"', 1)[1].split("<script", 1)[0]  # what React rendered, not the embedded data
    assert "<iframe" in shown and "Shared leaderboard" in shown and "HEURISTIC-length-v1" in shown  # item + caption
    png = report_screenshot.screenshot(ci_report, tmp_path / "report.png", item, (1200, 800), chromium)
    image = plt.imread(png)
    assert image.shape[:2] == (800, 1200)
    assert image[..., :3].std() > 0.05  # not a blank page
