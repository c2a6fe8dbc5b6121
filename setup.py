"""Packages are found from the folders (pyproject.toml holds everything else): a new paper under methods/ or a
benchmark under evals/ is packaged without editing a list. The design card's top-level folders map into one import
name: `methods/cut` installs as `alignrepro.methods.cut`, `evals/alpacaeval` as `alignrepro.evals.alpacaeval`."""

from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
PACKAGE_DIR = {"alignrepro": "alignrepro", "alignrepro.methods": "methods", "alignrepro.evals": "evals"}


DATA = ("*.yaml", "*.jsonl", "*.json", "*.txt", "*.md", "*.smk")  # = pyproject's package-data


def mapped_packages() -> list[str]:
    """Folders with an __init__.py, and data-only folders (task YAMLs, a user's row folder) below them."""
    found = set()
    for name, folder in PACKAGE_DIR.items():
        for d in [ROOT / folder, *(p for p in (ROOT / folder).rglob("*") if p.is_dir())]:
            rel = d.relative_to(ROOT / folder)
            if any(part.startswith(".") or part == "__pycache__" or part.endswith(".egg-info") for part in rel.parts):
                continue
            if (d / "__init__.py").is_file() or any(any(d.glob(g)) for g in DATA):
                found.add(".".join([name, *rel.parts]))
    return sorted(found)


if __name__ == "__main__":
    setup(packages=mapped_packages(), package_dir=PACKAGE_DIR)
