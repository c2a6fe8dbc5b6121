"""Repeated, interleaved measurements and their summaries (min / median / max, ratios)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Sample:
    """One run of one variant: wall and process CPU seconds, the work done (`units`, e.g. tokens) and its output."""

    wall_s: float
    cpu_s: float
    units: float = 0.0
    output: Any = None


@dataclass
class Series:
    name: str
    samples: list[Sample] = field(default_factory=list)

    def rates(self, clock: str = "wall_s") -> list[float]:
        """Units per second of each sample (work / time)."""
        return [s.units / max(getattr(s, clock), 1e-9) for s in self.samples]


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "min": min(values), "median": statistics.median(values), "max": max(values)}


def timed(fn: Callable[[], tuple[float, Any] | Sample]) -> Sample:
    """Run `fn` once, timing wall clock and this process's CPU time. `fn` returns (units, output), or a Sample it
    timed itself (to leave its set-up, e.g. building a trainer, out of the measured part)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    if isinstance(result, Sample):
        return result
    units, output = result
    return Sample(time.perf_counter() - wall, time.process_time() - cpu, float(units), output)


def interleaved(variants: dict[str, Callable[[], Any]], repeats: int) -> dict[str, Series]:
    """Each repeat runs every variant once, the order reversed on every other repeat (ABBA...), so a drift in the
    machine's load hits both sides alike."""
    series = {name: Series(name) for name in variants}
    names = list(variants)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            series[name].samples.append(timed(variants[name]))
    return series


def ratio(project: Series, baseline: Series, clock: str = "wall_s") -> dict[str, float]:
    """project rate / baseline rate, paired by repeat (> 1: the project is faster); min / median / max."""
    pairs = zip(project.rates(clock), baseline.rates(clock), strict=True)
    return summary([p / b for p, b in pairs if b > 0])


def time_ratio(project: Series, baseline: Series, clock: str = "wall_s") -> dict[str, float]:
    """baseline seconds / project seconds for the same work, paired by repeat (> 1: the project is faster); for
    variants whose unit counts differ though the work is the same (generation that stops at a stop string)."""
    pairs = zip(project.samples, baseline.samples, strict=True)
    return summary([getattr(b, clock) / getattr(p, clock) for p, b in pairs if getattr(p, clock) > 0])


def rate_table(series: dict[str, Series], unit: str) -> dict[str, Any]:
    """Per variant: units/s on the wall clock and on the process's CPU clock, and seconds per run."""
    return {
        name: {
            f"{unit}_per_s": summary(s.rates("wall_s")),
            f"{unit}_per_cpu_s": summary(s.rates("cpu_s")),
            "wall_s": summary([x.wall_s for x in s.samples]),
            "units": s.samples[0].units if s.samples else 0,
        }
        for name, s in series.items()
    }
