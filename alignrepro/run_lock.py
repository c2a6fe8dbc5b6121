"""Recover from a killed Snakemake run without `snakemake --unlock`.

Snakemake locks the working directory and leaves the lock behind when it is killed (kill -9, a lost terminal, an
OOM kill), so every restart failed with "Directory cannot be locked" until the user ran `--unlock`. The Snakefile
calls `claim` in the main Snakemake process: it takes an OS lock (flock) on .snakemake/alignrepro-run.lock and
keeps it for the life of the process; the kernel drops it when the process dies, however it dies. So when `claim`
gets the flock while Snakemake's own locks exist, no live run of this workflow holds them: they are stale and are
removed. A live run still holds its flock, and Snakemake then refuses the second run as before.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

_held: list[int] = []  # the fd must stay open for the life of the process


def claim(workdir: str | Path = ".") -> list[str]:
    """Take this process's run lock; return the stale Snakemake lock files it removed (empty when none)."""
    meta = Path(workdir) / ".snakemake"
    meta.mkdir(parents=True, exist_ok=True)
    fd = os.open(meta / "alignrepro-run.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)  # another run of this workflow is alive here: leave its locks alone
        return []
    _held.append(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    removed = []
    for lock in sorted((meta / "locks").glob("*.lock")):
        lock.unlink(missing_ok=True)
        removed.append(str(lock))
    return removed
