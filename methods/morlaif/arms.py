"""MORLAIF's arms are rows (alignrepro.rows): one entry each in methods/morlaif/paper.yaml, or a row folder.

    # methods/morlaif/paper.yaml `rows:` (a row folder's row.yaml has the same fields plus `paper: morlaif`)
    soft_max_min: {label: Soft max-min, scalarizer: "alignrepro.methods.morlaif.scalarizers:soft_max_min"}
    single_pm: {label: Single-PM RLAIF, scalarizer: "alignrepro.methods.morlaif.scalarizers:identity", pms: cai}

An arm's reward is `scalarizer(r, **params)` (scalarizers.scalarize), where r is what its PMs say:
  pms: principles (default)  the 12 principle PMs, z-scored and multiplied by the principle weights of
                             analysis/weights.json (r_i = w_i * z_i), as figure B scores them;
  pms: cai | hhh             one baseline PM's raw score (r has one column; weights.json is not read).
`params` = `morlaif.scalarizer_params` restricted to the parameters the function takes, then the row's own
`params` on top. They are resolved when the workflow starts, so a job's params carry only what its arm depends
on: a changed temperature reruns soft_max_min's PPO alone, and a new row reruns figure B and its own jobs only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from alignrepro.errors import UserError
from alignrepro.rows import Row, enabled, load_ref, paper_rows

PAPER = "morlaif"
PRINCIPLE_PMS = "principles"


@dataclass(frozen=True)
class Arm:
    name: str
    label: str
    scalarizer: str  # "package.module:function", or "file.py:function" in the row's folder
    pms: str = PRINCIPLE_PMS  # "principles" (z-scored, weighted) or one baseline PM's name (raw score)
    params: dict[str, Any] = field(default_factory=dict)  # resolved: what the function is called with
    folder: str = ""  # the row folder ("" for a manifest row)

    @property
    def weighted(self) -> bool:
        """Reads the 12 principle PMs through weights.json (z-score stats and weights)."""
        return self.pms == PRINCIPLE_PMS

    def function(self) -> Callable[..., Any]:
        return load_ref(self.scalarizer, self.folder or None)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Arm:
        """From `to_json()` (a job's --row-json); a row's public() works too (its params are then taken as given)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known and v is not None})


def resolve_params(fn: Callable[..., Any], shared: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """The shared params the function takes, then the row's own; a row param the function does not take is an
    error (a typo would otherwise be ignored)."""
    from alignrepro.methods.morlaif.scalarizers import accepted_params

    accepted = accepted_params(fn)
    if accepted is None:  # f(r, **kwargs): every parameter reaches it
        return {**shared, **own}
    unknown = sorted(set(own) - accepted)
    if unknown:
        raise UserError(f"{unknown} are not parameters of the scalarizer (it takes {sorted(accepted) or 'none'})")
    return {k: v for k, v in {**shared, **own}.items() if k in accepted}


def arm_of(row: Row, shared: dict[str, Any]) -> Arm:
    fn = row.load("scalarizer")  # names the row's file when the function cannot be loaded
    try:
        params = resolve_params(fn, shared, row.spec.get("params") or {})
    except UserError as e:
        raise UserError(f"{row.source}: row {row.name!r} field 'params': {e}") from e
    folder = str(row.folder or "")
    return Arm(row.name, row.label, row.spec["scalarizer"], row.spec.get("pms", PRINCIPLE_PMS), params, folder)


def run_arms(chosen: list[str], shared: dict[str, Any], row_dirs: list[Any] = ()) -> dict[str, Arm]:
    """The run's PPO arms: the manifest rows `morlaif.arms` lists, then every enabled row folder."""
    return {r.name: arm_of(r, shared) for r in enabled(PAPER, chosen, row_dirs)}


def figure_b_arms(shared: dict[str, Any], row_dirs: list[Any] = ()) -> dict[str, Arm]:
    """Figure B's objectives: every scalarizer row over the principle PMs, whether or not it is a PPO arm of this
    run (the paper's figure B has all seven), and every enabled row folder's. Single-PM rows are figure B's
    baselines instead (`analysis.baselines`)."""
    rows = paper_rows(PAPER, row_dirs)
    picked = [r for r in rows.values() if (r.folder is None or r.enabled)]
    return {r.name: a for r in picked if (a := arm_of(r, shared)).weighted}
