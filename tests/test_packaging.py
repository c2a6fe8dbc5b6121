"""The package-dir mapping in pyproject.toml lists packages by hand; every package folder must be in it."""

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed():
    pp = tomllib.loads((REPO / "pyproject.toml").read_text())
    listed = set(pp["tool"]["setuptools"]["packages"])
    mapping = pp["tool"]["setuptools"]["package-dir"]
    found = set()
    for name, folder in mapping.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            found.add(".".join([name, *rel.parts]))
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"


def test_no_top_level_evals_or_methods_import_name():
    pp = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert all(p.startswith("alignrepro") for p in pp["tool"]["setuptools"]["packages"])
