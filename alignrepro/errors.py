"""User-facing errors: a bad input, a broken file, an endpoint that answers nonsense.

A `UserError` says what is wrong and where (file, config key, endpoint) and what was expected. Every step runs as
`python -m alignrepro...`, which imports this package first; its excepthook prints a `UserError` as one line
(`alignrepro: error: <message>`) with exit status 2, so a job log ends with the cause instead of a traceback.
Set ALIGNREPRO_TRACEBACK=1 to see the traceback as well.
"""

from __future__ import annotations

import os
import sys


class UserError(Exception):
    """An error whose message is complete for the user: it names the file/key/endpoint and what was expected."""


class IntegrityError(UserError):
    """A file differs from the hash recorded when it was written (truncated, corrupted, replaced)."""


class TrainingDiverged(UserError):
    """Training produced a non-finite loss or gradient norm."""


class EndpointError(UserError, RuntimeError):
    """An OpenAI-compatible endpoint could not be used: no key, refused or failed requests, or an answer that is not
    a chat completion. Also a RuntimeError, what the client raised before, so existing handlers still catch it."""


def _hook(exc_type, exc, tb) -> None:
    if issubclass(exc_type, UserError) and not os.environ.get("ALIGNREPRO_TRACEBACK"):
        print(f"alignrepro: error: {exc}", file=sys.stderr)
        sys.exit(2)
    _previous(exc_type, exc, tb)


_previous = sys.excepthook


def install_excepthook() -> None:
    if sys.excepthook is not _hook:
        sys.excepthook = _hook
