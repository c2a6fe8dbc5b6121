"""Saved W&B Reports (wandb-workspaces): one per paper and one for the shared leaderboard, over the runs that
alignrepro/wandb_runs.py logs (project = the tier's, group = the paper, job_type = the stage).

build_reports only builds the objects (no network: a test checks them offline); publish saves them, which needs
W&B online and a login (evals/wandb_log.py calls it when `wandb.mode` is online). A report's panels select runs by
group and job_type, so a paper added under methods/ gets its report with no edit here.
"""

from __future__ import annotations

from typing import Any

from alignrepro.papers import discover
from alignrepro.wandb_runs import WandbSettings

# What each report shows of a model's evaluation run (summary keys: the leaderboard's columns) unless told otherwise
DEFAULT_METRICS = ("alpacaeval_win_rate", "mtbench_score", "mmlu_acc", "harmless_strmatch", "avg_words")


def _owner(settings: WandbSettings) -> dict[str, str]:
    # wandb-workspaces asks the API for the default entity when none is given: only pass a configured one
    return {"entity": settings.entity} if settings.entity else {}


def runset(settings: WandbSettings, name: str, group: str | None, job_type: str) -> Any:
    import wandb_workspaces.reports.v2 as wr

    where = f"JobType = '{job_type}'" + (f" and Group = '{group}'" if group else "")
    return wr.Runset(project=settings.project, name=name, filters=where, **_owner(settings))


def score_panels(metrics: list[str]) -> list[Any]:
    import wandb_workspaces.reports.v2 as wr

    bars = [wr.BarPlot(title=m, metrics=[wr.SummaryMetric(m)], orientation="h") for m in metrics]
    return [*bars, wr.WeavePanelSummaryTable(table_name="generations"), wr.RunComparer(diff_only="split")]


def paper_report(settings: WandbSettings, tier: str, name: str, title: str, arxiv: str, metrics: list[str]) -> Any:
    import wandb_workspaces.reports.v2 as wr

    return wr.Report(
        project=settings.project,
        title=f"{name}: {title} ({tier})"[:128],
        description=f"arXiv {arxiv}; tier {tier}: training curves, the paper's tables, its models on the shared "
        "benchmarks (alignrepro)",
        width="fluid",
        blocks=[
            wr.H1(text=f"{title} ({name}, tier {tier})"),
            wr.MarkdownBlock(text=f"[arXiv {arxiv}](https://arxiv.org/abs/{arxiv}). Runs of group `{name}` in "
                             f"project `{settings.project}`; every number carries its provenance in the run config."),
            wr.H2(text="Training"),
            wr.PanelGrid(
                runsets=[runset(settings, f"{name} training", name, "train")],
                panels=[wr.LinePlot(title="loss", x="train/global_step", y=["train/loss"]),
                        wr.LinePlot(title="learning rate", x="train/global_step", y=["train/learning_rate"])],
            ),
            wr.H2(text="The paper's tables"),
            wr.PanelGrid(runsets=[runset(settings, f"{name} tables", name, "aggregate")], panels=[wr.RunComparer()]),
            wr.H2(text="Its models on the shared benchmarks"),
            wr.PanelGrid(runsets=[runset(settings, f"{name} models", name, "eval")], panels=score_panels(metrics)),
        ],
        **_owner(settings),
    )  # fmt: skip


def leaderboard_report(settings: WandbSettings, tier: str, metrics: list[str]) -> Any:
    import wandb_workspaces.reports.v2 as wr

    return wr.Report(
        project=settings.project,
        title=f"Shared leaderboard ({tier})",
        description=f"Every model on the shared benchmarks at tier {tier}, each judged column beside its judge card",
        width="fluid",
        blocks=[
            wr.H1(text=f"Shared leaderboard (tier {tier})"),
            wr.PanelGrid(runsets=[runset(settings, "leaderboard", "leaderboard", "leaderboard")],
                         panels=[wr.WeavePanelSummaryTable(table_name="leaderboard")]),
            wr.H2(text="Every model"),
            wr.PanelGrid(runsets=[runset(settings, "all models", None, "eval")], panels=score_panels(metrics)),
            wr.H2(text="Judge cards"),
            wr.PanelGrid(runsets=[runset(settings, "judge cards", "judges", "judge-card")],
                         panels=[wr.WeavePanelSummaryTable(table_name="judge_card")]),
        ],
        **_owner(settings),
    )  # fmt: skip


def build_reports(settings: WandbSettings, tier: str, metrics: list[str] | None = None) -> dict[str, Any]:
    """{paper name: its report, ..., "leaderboard": the leaderboard's}; nothing is sent anywhere."""
    metrics = list(metrics or DEFAULT_METRICS)
    reports = {
        name: paper_report(settings, tier, name, paper.title, paper.arxiv, metrics)
        for name, paper in discover().items()
    }
    reports["leaderboard"] = leaderboard_report(settings, tier, metrics)
    return reports


def publish(reports: dict[str, Any]) -> list[dict[str, str]]:
    """Save every report to W&B (online only); returns each one's title and URL."""
    out = []
    for name, report in reports.items():
        report.save()
        out.append({"name": name, "title": report.title, "url": report.url})
    return out
