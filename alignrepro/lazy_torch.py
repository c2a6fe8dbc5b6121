"""torch where it is used, not where a module is imported.

Snakemake's own process imports the modules that method rows name (alignrepro.rows checks every builder at start),
and with them generation and models: a top-level `import torch` there cost every workflow start, dry runs included,
~1.5 CPU-s for nothing. Those modules import torch inside the functions that compute, and use this decorator.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any


def inference_mode(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`@torch.inference_mode()` for a function (not a generator) of a module that imports without torch."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.inference_mode():
            return fn(*args, **kwargs)

    return wrapper
