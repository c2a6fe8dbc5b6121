"""User-facing errors: a bad input, a broken file, an endpoint that answers nonsense.

A `UserError` says what is wrong and where (file, config key, endpoint) and what was expected. Every step runs as
`python -m alignrepro...`, which imports this package first; its excepthook prints a `UserError` as one line
(`alignrepro: error: <message>`) with exit status 2, so a job log ends with the cause instead of a traceback.
A file the OS cannot open (missing, a folder, no permission) is told the same way, naming the file. The
`alignrepro` command does the same in its own handler (alignrepro/cli.py). Set ALIGNREPRO_TRACEBACK=1 (or give
`alignrepro --debug <step>`) to see the traceback as well.
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


FILE_ERRORS = {  # what the OS could not do with a file the user named, in their words
    FileNotFoundError: "no such file or folder",
    IsADirectoryError: "a folder, expected a file",
    NotADirectoryError: "not a folder",
    PermissionError: "permission denied",
}


def user_message(exc: BaseException) -> str | None:
    """The one line a user gets for an error that is theirs to fix (a UserError, a file the OS cannot open); None
    for anything else (a bug: its traceback is what helps)."""
    if isinstance(exc, UserError):
        return str(exc)
    for cls, expected in FILE_ERRORS.items():
        if isinstance(exc, cls) and getattr(exc, "filename", None) is not None:
            return f"{exc.filename}: {expected}"
    return None


def show_traceback() -> bool:
    return os.environ.get("ALIGNREPRO_TRACEBACK", "").lower() not in ("", "0", "false", "no")


def _hook(exc_type, exc, tb) -> None:
    message = user_message(exc)
    if message is not None and not show_traceback():
        print(f"alignrepro: error: {message}", file=sys.stderr)
        sys.exit(2)
    _previous(exc_type, exc, tb)


_previous = sys.excepthook


def install_excepthook() -> None:
    if sys.excepthook is not _hook:
        sys.excepthook = _hook
