"""What machine a benchmark ran on: CPU model and the flags that decide fp32/bf16 speed, cores, load, torch threads,
package versions and the commit (numbers from another machine or a loaded one are not comparable)."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from typing import Any

from alignrepro.provenance import cpu_flags, git_commit, package_versions


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    import torch

    flags = cpu_flags()
    return {
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "cpu_model": cpu_model(),
        "cpu_flags": flags,
        "native_bf16": any(f in flags for f in ("avx512_bf16", "amx_bf16")),
        "cores": os.cpu_count(),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "packages": package_versions(),
    }
