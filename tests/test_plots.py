"""Plots draw a missing value as missing ("n/a", no bar, a gap in a line) and a real 0 as a bar of height 0 with its
label, in the shared helper and in CUT's, MORLAIF's and MoTE's figures; MORLAIF figure C's reported bars keep their
own base's label whatever bases the run has. Checked on the matplotlib artists, not on the PNG's existence."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.container import BarContainer  # noqa: E402

from alignrepro.methods.cut import aggregate as cut_agg  # noqa: E402
from alignrepro.methods.morlaif import aggregate as morlaif_agg  # noqa: E402
from alignrepro.methods.mote import aggregate as mote_agg  # noqa: E402
from alignrepro.reporting import MISSING_LABEL, bars_or_missing, line_or_missing, plot_value  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def texts_at(ax) -> dict[float, list[str]]:
    """Every text artist of the axes by its x position (rounded, for float offsets)."""
    out: dict[float, list[str]] = {}
    for t in ax.texts:
        out.setdefault(round(t.get_position()[0], 6), []).append(t.get_text())
    return out


def bar_sets(ax) -> list:
    """The axes' BarContainers in drawing order (error bars add ErrorbarContainers beside them)."""
    return [c for c in ax.containers if isinstance(c, BarContainer)]


def bars(container) -> dict[float, float]:
    """x centre -> height of each bar of a BarContainer."""
    return {round(p.get_x() + p.get_width() / 2, 6): p.get_height() for p in container.patches}


def test_plot_value_tells_missing_from_zero():
    assert [plot_value(v) for v in (0, 0.0, "0", 2.5, "3")] == [0.0, 0.0, 0.0, 2.5, 3.0]
    assert [plot_value(v) for v in (None, math.nan, "", "n/a", "–", [1], True)] == [None] * 7


def test_bars_helper_no_bar_for_missing_and_a_labelled_zero_bar(ax):
    c = bars_or_missing(ax, [0, 1, 2, 3, 4], [None, 0, 3.5, math.nan, ""], 0.4, ci=[None, [0, 1], [3, 4], None, None])
    assert bars(c) == {1: 0.0, 2: 3.5}  # two bars: the 0 and the 3.5; nothing at the three missing slots
    assert texts_at(ax) == {0: [MISSING_LABEL], 1: ["0"], 3: [MISSING_LABEL], 4: [MISSING_LABEL]}
    # error bars only on the present values, from their own intervals
    (err,) = c.errorbar.lines[2]
    spans = sorted(tuple(seg[:, 1]) for seg in err.get_segments())
    assert spans == [(0.0, 1.0), (3.0, 4.0)]


def test_line_helper_gap_for_missing(ax):
    line = line_or_missing(ax, [0, 1, 2], [5.0, None, 0], "o-", ci=[[4, 6], None, [0, 1]])
    y = list(line.get_ydata())
    assert y[0] == 5.0 and math.isnan(y[1]) and y[2] == 0.0
    assert texts_at(ax) == {1: [MISSING_LABEL]}


def _cut_row(method: str, acc, win, tier: str = "ci") -> dict:
    return {"method": method, "tier": tier, "accuracy": acc, "accuracy_ci95": None if acc is None else [acc, acc],
            "win_rate": win, "win_rate_ci95": None if win is None else [win, win]}  # fmt: skip


def test_cut_plot_missing_win_rate_is_no_bar_and_zero_accuracy_is_a_bar(tmp_path):
    offline = {"b": [_cut_row("Base", 0.0, None), _cut_row("CUT", 40.0, 55.0)]}
    online = [_cut_row("Base (iter 0)", 0.0, None), _cut_row("CUT 1+", 30.0, 60.0)]
    fig = cut_agg.plot(offline, online, tmp_path / "cut.png")
    assert (tmp_path / "cut.png").read_bytes()[:4] == b"\x89PNG"
    off, on = fig.axes[0], fig.axes[1]
    acc, win = bar_sets(off)[0], bar_sets(off)[1]
    assert bars(acc) == {-0.18: 0.0, 0.82: 40.0}  # the measured 0 keeps its bar
    assert bars(win) == {1.18: 55.0}  # the base's missing win rate gets none
    assert texts_at(off) == {-0.18: ["0"], 0.18: [MISSING_LABEL]}
    acc_line, win_line = on.get_lines()[:2]
    assert list(acc_line.get_ydata()) == [0.0, 30.0]
    assert math.isnan(win_line.get_ydata()[0]) and win_line.get_ydata()[1] == 60.0
    assert [t.get_text() for t in on.texts] == [MISSING_LABEL]


def test_mote_table4_plot_reported_only_arch_is_na_not_zero(tmp_path):
    def row(name, source, harm, help_):
        return {"table": "table4", "row": name, "source": source, "harm": harm, "help": help_}

    tables = {
        "table4": [
            row("LoRA", "reported (v5)", 90.89, 7.12),
            row("MoTE", "reported (v5)", 94.45, 7.25),
            row("MoTE", "reproduced", 0.0, None),
        ],  # fmt: skip
        "fig6": [
            {"mode": "q_a", "budget": 12, "mean_output_tokens": 10.0, "harm": 0.0},
            {"mode": "q_a", "budget": 24, "mean_output_tokens": 20.0, "harm": None},
            {"mode": "q_a", "budget": 48, "mean_output_tokens": 30.0, "harm": 50.0},
        ],  # fmt: skip
    }
    fig6, fig4 = mote_agg._plots(tables, tmp_path, "judge: test")
    harm_ax, help_ax = fig4.axes
    assert bars(bar_sets(harm_ax)[0]) == {0: 90.89, 1: 94.45}
    assert bars(bar_sets(harm_ax)[1]) == {1.4: 0.0}  # MoTE's measured 0 % is a bar; LoRA (not run) is not
    assert texts_at(harm_ax) == {0.4: [MISSING_LABEL], 1.4: ["0"]}
    assert len(bar_sets(help_ax)[1].patches) == 0  # no reproduced Help at all: no bars, two "n/a"
    assert texts_at(help_ax) == {0.4: [MISSING_LABEL], 1.4: [MISSING_LABEL]}
    (line,) = fig6.axes[0].get_lines()
    assert list(line.get_xdata()) == [10.0, 30.0] and list(line.get_ydata()) == [0.0, 50.0]


REPORTED = morlaif_agg.load_reported(REPO / "methods" / "morlaif" / "reported.yaml")
PAPER_C = dict(
    zip(
        REPORTED["fig_llm_winrate"]["columns"], REPORTED["fig_llm_winrate"]["rows"]["morlaif_win_rate_pct"], strict=True
    )
)


def _base(name: str, win_rate=None, acc=0.7) -> SimpleNamespace:
    """A MORLAIF Base's analysis results (the attributes the plots read)."""
    return SimpleNamespace(
        name=name,
        c={"cells": {"single_pm": {"linear": {"win_rate": win_rate}}}},
        a={"principles": {"toxicity": {"accuracy": acc}, "bias": {"accuracy": None}}},
        b={
            "objectives": {"linear": {"accuracy": 0.0}},
            "baselines": {"single_pm_rlaif_baseline": {"accuracy": None}},
            "multi_pm_ceiling": {"accuracy": None},
        },  # fmt: skip
        f={"agreement": [[1.0, None], [None, 1.0]], "columns": ["toxicity", "bias"], "rows": ["toxicity", "bias"]},
        g={"k": [0, 1], "ceiling": [0.8, None], "pm": [0.7, 0.6]},
        weights={"weights": {"toxicity": 1.0, "bias": -0.5}, "mode": "uniform"},
    )


def _check_figure_c(ax, names: list[str]) -> None:
    """Every reported bar stands at the tick of its own paper base, with that base's reported value."""
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    reported = bars(bar_sets(ax)[1])
    assert len(reported) == len(PAPER_C)
    for x, height in reported.items():
        label = ticks[round(x - 0.2)]
        paper_base = next((c for c in PAPER_C if c.replace("_", "-") == label), label)
        assert height == PAPER_C[paper_base], (label, height)
    assert ticks[: len(names)] == names


@pytest.mark.parametrize(
    "names",
    [["ci-random-llama"], ["smollm2-135m-instruct", "ci-random-llama"], ["gpt2-xl", "ci-random-llama"]],
)
def test_morlaif_figure_c_reported_bars_keep_their_base(ax, names):
    bases = [_base(n, win_rate=w) for n, w in zip(names, [0.0, None], strict=False)]
    morlaif_agg.plot_figure_c(ax, bases, REPORTED, "linear")
    _check_figure_c(ax, names)
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks.count("gpt2_xl") + ticks.count("gpt2-xl") == 1  # a run base that is a paper base shares its slot
    assert bars(bar_sets(ax)[0]) == {-0.2: 0.0}  # the first base's measured 0 is a bar of height 0 ...
    if len(names) == 2:  # ... the second's missing win rate is "n/a" at its own slot
        assert MISSING_LABEL in texts_at(ax)[0.8]


def test_morlaif_plot_figures_missing_values_are_not_bars(tmp_path):
    bases = [_base("ci-random-llama", win_rate=None, acc=0.0)]
    fig = morlaif_agg.plot_figures(bases, REPORTED, "linear", tmp_path / "fig.png")
    a, b, c = fig.axes[:3]
    # A: toxicity's 0.0 is a bar, bias (accuracy None) is "n/a"; the paper reports both principles
    assert bars(bar_sets(a)[0]) == {-0.2: 0.0}
    assert texts_at(a) == {-0.2: ["0"], 0.8: [MISSING_LABEL]}
    assert len(bar_sets(a)[1].patches) == 2
    # B: linear's 0.0 is a bar, the missing baseline is "n/a", and no ceiling line is drawn at 0
    assert bars(bar_sets(b)[0]) == {-0.2: 0.0}
    assert [ln.get_label() for ln in b.get_lines()] == ["ceiling (reported)"]
    # C: no reproduced win rate at all: no bar, "n/a"; the paper's five bars keep their labels
    assert len(bar_sets(c)[0].patches) == 0 and texts_at(c)[-0.2] == [MISSING_LABEL]
    _check_figure_c(c, ["ci-random-llama"])
