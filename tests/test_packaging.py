"""Packaging: setup.py finds every package from the folders (a new paper needs no list), and the files a paper
declares itself with (manifest, config, schema, rules) ship as package data."""

import fnmatch
import importlib.util
import tomllib
from pathlib import Path

from alignrepro.papers import discover

REPO = Path(__file__).resolve().parents[1]


def _setup():
    spec = importlib.util.spec_from_file_location("alignrepro_setup", REPO / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_package_folder_is_packaged_under_alignrepro(tmp_path, monkeypatch):
    setup = _setup()
    packages = setup.mapped_packages()
    assert all(p.startswith("alignrepro") for p in packages)  # no top-level `evals`/`methods` import name
    assert {f"alignrepro.methods.{name}" for name in discover()} <= set(packages)
    assert {"alignrepro.judges", "alignrepro.evals.alpacaeval", "alignrepro.evals.lmeval.tasks"} <= set(packages)
    # a new paper folder is found without editing anything
    fake = tmp_path / "methods" / "newpaper"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    for name in ("alignrepro", "evals"):
        (tmp_path / name).mkdir()
    monkeypatch.setattr(setup, "ROOT", tmp_path)
    assert setup.mapped_packages() == ["alignrepro.methods.newpaper"]


def test_paper_files_ship_as_package_data():
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["*"]
    for paper in discover().values():
        for path in (paper.folder / "paper.yaml", paper.rules, paper.config, paper.schema):
            assert any(fnmatch.fnmatch(path.name, p) for p in patterns), path
