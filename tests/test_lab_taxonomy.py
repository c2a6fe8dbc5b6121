"""LAB's taxonomy: the real InstructLab leaves from the pinned sdists, validated with instructlab-schema."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from alignrepro.errors import UserError
from alignrepro.methods.lab import taxonomy


@pytest.fixture(scope="module")
def leaves():
    return {leaf.name: leaf for leaf in taxonomy.tiny_leaves(list(taxonomy.SDIST_LEAVES))}


def test_shipped_leaves_validate(leaves):
    kinds = {n: (leaf.kind, leaf.schema_version, leaf.branch) for n, leaf in leaves.items()}
    assert kinds == {
        "palindrome": ("freeform_skill", 2, "compositional_skills"),
        "siblings": ("freeform_skill", 1, "compositional_skills"),  # no `version` key: v1
        "punctuation": ("grounded_skill", 2, "compositional_skills"),
        "employee": ("grounded_skill", 2, "compositional_skills"),
        "phoenix": ("knowledge", 3, "knowledge"),
        "tonsils": ("knowledge", 3, "knowledge"),
        "mbta": ("knowledge", 3, "knowledge"),
    }
    assert taxonomy.TINY_LEAVES == ("palindrome", "siblings", "punctuation", "employee", "phoenix", "tonsils")
    phoenix, tonsils = leaves["phoenix"], leaves["tonsils"]
    assert phoenix.document.startswith("# Phoenix (constellation)") and not phoenix.chunks
    assert phoenix.qna["domain"] == "astronomy" and phoenix.attribution["license"].startswith("CC-BY-SA-4.0")
    assert len(tonsils.chunks) == 6 and tonsils.qna["domain"] == "anatomy_tonsil"
    assert len(tonsils.mmlu_branch) == 27
    assert all(len(q["choices"]) == 4 and q["answer"] in range(4) for q in tonsils.mmlu_branch)
    assert leaves["mbta"].document is None  # no archive holds mbta.md
    assert leaves["siblings"].leaf_node_path == "compositional_skills_extraction_inference_qualitative_e2e-siblings"
    assert leaves["palindrome"].attribution["license"] == "Apache-2.0"
    assert leaves["palindrome"].source.endswith("e2e-qna-freeform-palindrome-skill.yaml")


@pytest.mark.parametrize(
    ("name", "breaks", "field"),
    [
        ("palindrome", lambda q: q.pop("task_description"), r"\[\.\] 'task_description' is a required property"),
        ("siblings", lambda q: q.update(seed_examples=[]), r"\[\.seed_examples\]"),
        ("employee", lambda q: q["seed_examples"][1].pop("answer"), r"\[\.seed_examples\[1\]\] 'answer'"),
        (
            "phoenix",
            lambda q: q["seed_examples"][2]["questions_and_answers"].pop(),
            r"\[\.seed_examples\[2\]\.questions_and_answers\] Value must have at least 3 items",
        ),
        ("tonsils", lambda q: q.pop("document"), r"'document' is a required property"),
    ],
)
def test_a_broken_copy_fails_naming_the_file_and_the_field(leaves, name, breaks, field):
    leaf = leaves[name]
    qna = yaml.safe_load(yaml.safe_dump(leaf.qna))
    breaks(qna)
    with pytest.raises(UserError) as err:
        taxonomy.validate_text(yaml.safe_dump(qna, sort_keys=False), leaf.taxonomy_path, leaf.source)
    message = str(err.value)
    assert "\n" not in message and message.startswith(leaf.source)
    assert taxonomy.SDIST_LEAVES[name][0] in message
    assert re.search(field, message), message


def _write(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


V1_FOUNDATIONAL = """created_by: IBM
task_description: Reason about simple sequences.
seed_examples:
  - question: What comes next, 2, 4, 6?
    answer: "8"
  - question: What comes next, A, C, E?
    answer: G
  - question: What comes next, 1, 1, 2, 3, 5?
    answer: "8"
"""


@pytest.fixture
def local_taxonomy(tmp_path, leaves):
    """A small folder in the layout of instructlab/taxonomy, plus a local clone of a knowledge document repo."""
    root = tmp_path / "taxonomy"
    _write(root / "compositional_skills/linguistics/palindrome/qna.yaml", yaml.safe_dump(leaves["palindrome"].qna))
    phoenix = root / "knowledge/science/astronomy/phoenix"
    _write(phoenix / "qna.yaml", yaml.safe_dump(leaves["phoenix"].qna))
    _write(
        phoenix / "attribution.txt",
        "Title of work: Phoenix (constellation)\nLink to work: https://en.wikipedia.org/wiki/Phoenix_(constellation)\n"
        "Revision: 1\nLicense of the work: CC-BY-SA-4.0\nCreator names: Wikipedia Authors\n",
    )
    _write(root / "foundational_skills/reasoning/sequences/qna.yaml", V1_FOUNDATIONAL)
    _write(root / "docs/template_qna.yaml", "not: a leaf\n")
    docs = tmp_path / "documents"
    _write(docs / "rhelai-taxonomy-data/phoenix.md", leaves["phoenix"].document)
    return root, docs


def test_full_tier_loader_walks_the_three_branches(local_taxonomy):
    root, docs = local_taxonomy
    found = taxonomy.load_taxonomy_dir(root, commit=None, documents_dir=docs)
    got = [(leaf.taxonomy_path, leaf.kind, leaf.schema_version) for leaf in found]
    assert got == [
        ("compositional_skills/linguistics/palindrome", "freeform_skill", 2),
        ("knowledge/science/astronomy/phoenix", "knowledge", 3),
        ("foundational_skills/reasoning/sequences", "freeform_skill", 1),  # v1: 3 seeds, validated by its version
    ]
    phoenix = found[1]
    assert phoenix.document.startswith("# Phoenix") and phoenix.name == "knowledge_science_astronomy_phoenix"
    assert phoenix.attribution == {
        "title": "Phoenix (constellation)",
        "link": "https://en.wikipedia.org/wiki/Phoenix_(constellation)",
        "license": "CC-BY-SA-4.0",
        "creator": "Wikipedia Authors",
    }
    assert found[2].branch == "foundational_skills"
    without_docs = taxonomy.load_taxonomy_dir(root, commit=None)
    assert without_docs[1].document is None


def test_full_tier_loader_rejects_a_broken_leaf_and_a_wrong_commit(local_taxonomy):
    root, _ = local_taxonomy
    bad = root / "foundational_skills/reasoning/sequences/qna.yaml"
    bad.write_text(V1_FOUNDATIONAL.replace("task_description", "task"), encoding="utf-8")
    with pytest.raises(UserError, match=r"sequences/qna.yaml: invalid taxonomy leaf.*'task_description'"):
        taxonomy.load_taxonomy_dir(root, commit=None)
    with pytest.raises(UserError, match="not a git checkout"):
        taxonomy.load_taxonomy_dir(root)
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    bad.write_text(V1_FOUNDATIONAL, encoding="utf-8")
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "leaves"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    assert len(taxonomy.load_taxonomy_dir(root, commit=head[:7])) == 3
    with pytest.raises(UserError, match="expected the pinned taxonomy commit"):
        taxonomy.load_taxonomy_dir(root, commit="0000000")


def test_knowledge_document_patterns_must_match(local_taxonomy, tmp_path):
    root, _ = local_taxonomy
    with pytest.raises(UserError, match=r"no markdown matching \['phoenix.md'\]"):
        taxonomy.load_taxonomy_dir(root, commit=None, documents_dir=tmp_path / "empty")
