"""Layers import down only (../shared/notes/architecture.md): the engine (alignrepro/) and the shared benchmarks
(evals/) never import a paper, no paper imports another, and the project's modules import each other without cycles.

Every .py file under alignrepro/, evals/ and methods/ is parsed with `ast`, nothing is imported. For the layer rules
every import counts, module-level or inside a function (a lazy import is still a dependency), and so does a string
literal given to `importlib.import_module` / `__import__` / `load_object` (a hidden import). For the cycle check only
module-level imports count (class bodies included, `if TYPE_CHECKING:` blocks not): a function-level import runs when
the function is called, after every module has loaded, which is how a cycle is legitimately broken. Implicit imports
of parent packages (`__init__.py`) are not edges. "module:object" strings in paper.yaml are the registry, not imports.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"alignrepro": "alignrepro", "evals": "alignrepro.evals", "methods": "alignrepro.methods"}
PAPERS = "alignrepro.methods"
IMPORTERS = {"import_module", "__import__", "load_object"}  # calls whose literal first argument names a module


@dataclass(frozen=True)
class Edge:
    source: str  # the importing module
    target: str  # the imported module, as written (resolved if relative)
    line: int
    module_level: bool  # executed when the source module is imported


def module_name(path: Path, repo: Path) -> str:
    """alignrepro/x.py -> alignrepro.x, evals/a/b.py -> alignrepro.evals.a.b, methods/cut/__init__.py ->
    alignrepro.methods.cut."""
    rel = path.relative_to(repo)
    parts = [ROOTS[rel.parts[0]], *rel.parts[1:-1]]
    if rel.stem != "__init__":
        parts.append(rel.stem)
    return ".".join(parts)


def project_files(repo: Path) -> dict[str, Path]:
    files = {}
    for root in ROOTS:
        for path in sorted((repo / root).rglob("*.py")):
            if "__pycache__" not in path.parts and not any(p.startswith(".") for p in path.relative_to(repo).parts):
                files[module_name(path, repo)] = path
    return files


def _literal_prefix(node: ast.expr) -> str | None:
    """The constant start of a string expression: "a.b", "a." + x, f"a.{x}"."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _literal_prefix(node.left)
    if isinstance(node, ast.JoinedStr) and node.values:
        return _literal_prefix(node.values[0])
    return None


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


class _Imports(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, known: set[str]) -> None:
        self.module, self.known, self.edges = module, known, []
        self.package = module if is_package else module.rpartition(".")[0]
        self.depth = 0  # > 0 inside a function (or a TYPE_CHECKING block): not run at import time

    def _add(self, target: str, node: ast.AST) -> None:
        self.edges.append(Edge(self.module, target, node.lineno, self.depth == 0))

    def _nested(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _nested

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node):
            self._nested(node)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            anchor = self.package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, *([base] if base else [])])
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            self._add(sub if sub in self.known else base, node)  # `from pkg import module` imports the module

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name in IMPORTERS and node.args:
            prefix = _literal_prefix(node.args[0])
            if prefix:
                self._add(prefix.partition(":")[0], node)
        self.generic_visit(node)


def import_edges(repo: Path) -> list[Edge]:
    files = project_files(repo)
    known = set(files)
    edges = []
    for module, path in files.items():
        visitor = _Imports(module, path.name == "__init__.py", known)
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        edges += visitor.edges
    return edges


def paper_of(module: str) -> str | None:
    """The paper's name ("cut") for alignrepro.methods.cut(.x); None outside methods/ (and for the bare package
    alignrepro.methods)."""
    if not module.startswith(PAPERS + "."):
        return None
    return module[len(PAPERS) + 1 :].split(".")[0]


def layer_violations(edges: list[Edge], files: dict[str, Path], repo: Path) -> list[str]:
    out = []
    for e in edges:
        src, dst = paper_of(e.source), paper_of(e.target)
        where = f"{files[e.source].relative_to(repo)}:{e.line}"
        if src is None and dst is not None:
            out.append(f"{where}: {e.source} (engine/evals) imports the paper module {e.target}")
        elif src is not None and dst is not None and src != dst:
            out.append(f"{where}: paper {src!r} imports paper {dst!r} ({e.target})")
    return out


def _project_target(target: str, known: set[str]) -> str | None:
    """The project module an import loads: the longest known prefix of the dotted name."""
    parts = target.split(".")
    for i in range(len(parts), 0, -1):
        name = ".".join(parts[:i])
        if name in known:
            return name
    return None


def import_cycles(edges: list[Edge], known: set[str]) -> list[list[str]]:
    """Strongly connected components (Tarjan) of the module-level import graph with more than one module, or a
    module importing itself."""
    graph: dict[str, set[str]] = {m: set() for m in known}
    for e in edges:
        target = _project_target(e.target, known)
        if e.module_level and target is not None:
            graph[e.source].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # recursion depth <= number of modules (~100)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


# ---------------------------------------------------------------------------------------------------- the repo
@pytest.fixture(scope="module")
def repo_graph():
    files = project_files(REPO)
    return files, import_edges(REPO)


def test_the_walk_sees_every_layer_and_lazy_imports(repo_graph):
    from alignrepro.papers import discover

    files, edges = repo_graph
    assert {"alignrepro.generation", "alignrepro.evals.lmeval.run"} <= set(files)
    assert set(discover()) <= {paper_of(m) for m in files}  # every paper's modules are walked
    assert any(not e.module_level for e in edges) and any(e.module_level for e in edges)


def test_engine_and_evals_never_import_a_paper_and_no_paper_imports_another(repo_graph):
    files, edges = repo_graph
    assert layer_violations(edges, files, REPO) == []


def test_no_import_cycle_among_the_projects_modules(repo_graph):
    files, edges = repo_graph
    assert import_cycles(edges, set(files)) == []


def test_the_cli_lists_no_paper_module():
    """`alignrepro --help` reads its steps from the paper manifests: no paper module is named in cli.py."""
    tree = ast.parse((REPO / "alignrepro" / "cli.py").read_text(encoding="utf-8"))
    strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    assert [s for s in strings if PAPERS in s] == []


# ---------------------------------------------------------------------------------------------------- the checker
def _write(repo: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


@pytest.fixture
def fake_repo(tmp_path):
    """A small tree with each kind of fault the checks must catch, next to the allowed patterns."""
    _write(
        tmp_path,
        {
            "alignrepro/__init__.py": "",
            "alignrepro/gen.py": (
                "def backend():\n"
                "    from alignrepro.methods.b.backend import Backend\n"  # lazy engine -> paper
                "    return Backend\n"
            ),
            "alignrepro/models.py": "import importlib\nM = importlib.import_module('alignrepro.methods.a.x')\n",
            "alignrepro/ok.py": "from alignrepro import models\nX = 'alignrepro.methods.a.x:obj'\n",  # a string only
            "evals/__init__.py": "",
            "evals/lm/run.py": "from alignrepro.methods.b import backend\n",
            "methods/__init__.py": "",
            "methods/a/__init__.py": "",
            "methods/a/x.py": (
                "from alignrepro.methods.b.y import f\n"  # paper a -> paper b
                "from . import z\n"
                "from alignrepro.evals.lm import run\n"  # a paper may import evals
            ),
            "methods/a/z.py": "import alignrepro.methods.a.x\n",  # x -> z -> x: a cycle inside one paper
            "methods/b/__init__.py": "",
            "methods/b/backend.py": "from alignrepro.methods.b import y\n",
            "methods/b/y.py": (
                "from alignrepro.gen import backend\n\n"
                "def f():\n    from alignrepro.methods.b import backend\n"  # back to b.backend, lazily
            ),
        },
    )
    return tmp_path


def test_module_names_map_the_three_roots(fake_repo):
    assert set(project_files(fake_repo)) == {
        "alignrepro",
        "alignrepro.gen",
        "alignrepro.models",
        "alignrepro.ok",
        "alignrepro.evals",
        "alignrepro.evals.lm.run",
        "alignrepro.methods",
        "alignrepro.methods.a",
        "alignrepro.methods.a.x",
        "alignrepro.methods.a.z",
        "alignrepro.methods.b",
        "alignrepro.methods.b.backend",
        "alignrepro.methods.b.y",
    }


def test_layer_check_catches_lazy_hidden_and_cross_paper_imports(fake_repo):
    files = project_files(fake_repo)
    found = layer_violations(import_edges(fake_repo), files, fake_repo)
    assert len(found) == 4, found
    assert any(f.startswith("alignrepro/gen.py:2: alignrepro.gen (engine/evals)") for f in found)  # function level
    assert any(f.startswith("alignrepro/models.py:2:") and "alignrepro.methods.a.x" in f for f in found)  # string
    assert any(f.startswith("evals/lm/run.py:1:") and "alignrepro.methods.b.backend" in f for f in found)
    assert any(f.startswith("methods/a/x.py:1: paper 'a' imports paper 'b'") for f in found)


def test_cycle_check_counts_module_level_imports_only(fake_repo):
    files = project_files(fake_repo)
    # a.x -> a.z -> a.x (relative import resolved); b.backend -> b.y -> (function level) b.backend is not a cycle
    assert import_cycles(import_edges(fake_repo), set(files)) == [["alignrepro.methods.a.x", "alignrepro.methods.a.z"]]


def test_the_old_generation_mote_cycle_would_be_caught(fake_repo):
    """The shape this test was written for: generation -> mote.backend -> mote.infer -> generation."""
    _write(
        fake_repo,
        {
            "alignrepro/gen.py": "from alignrepro.methods.b.backend import Backend\n",
            "methods/b/backend.py": "from alignrepro.methods.b.y import f\n",
        },
    )
    files = project_files(fake_repo)
    cycles = import_cycles(import_edges(fake_repo), set(files))
    assert ["alignrepro.gen", "alignrepro.methods.b.backend", "alignrepro.methods.b.y"] in cycles
