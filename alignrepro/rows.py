"""Method rows: one entry each, torchtune's way (a row names the builders it is made of).

A paper declares its own rows in its manifest (methods/<paper>/paper.yaml, `rows:`) with a JSON schema for their
fields (`row_schema:`); a user's row is a folder of its own, `<dir>/<row>/row.yaml`, found under
methods/<paper>/rows/ and under every folder in the config's `row_dirs`:

    # methods/cut/rows/ipo/row.yaml
    paper: cut
    label: IPO
    objective: IPO
    data: "alignrepro.methods.cut.baseline_data:ilf_dpo_rows"   # or "build.py:pairs", a file in this folder
    trainer: "trl:DPOTrainer"
    config: {loss_type: [ipo]}

Every declared row is checked when the workflow starts (fields against the paper's row schema, builders importable),
so a row that cannot be built fails at once, naming its file; nothing is skipped silently. A folder row with
`enabled: false` is known but not run (the shipped example). A paper with rows of several kinds (MoTE's Table 1
baselines and Table 4 architectures) marks the other kinds with `table: <name>` (a field of its row schema); rows
without one form the paper's default table, and `enabled`/`row_lists` pick one table at a time.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from alignrepro.errors import UserError
from alignrepro.papers import METHODS_DIR, discover, load_object

ROW_FILE = "row.yaml"
REPO = METHODS_DIR.parent
_COMMON = {"paper", "name", "label", "enabled"}


@dataclass(frozen=True)
class Row:
    paper: str
    name: str
    label: str
    spec: dict[str, Any]  # the paper's own fields (builders, trainer, config, …), checked against its row schema
    source: Path  # the manifest or row.yaml that declares it
    enabled: bool = True

    @property
    def table(self) -> str | None:
        """The paper's table the row belongs to (None: the paper's default table)."""
        return self.spec.get("table")

    @property
    def folder(self) -> Path | None:
        return self.source.parent if self.source.name == ROW_FILE else None

    def load(self, field: str) -> Any:
        """The object a builder field names: "package.module:object", or "file.py:object" in the row's folder."""
        try:
            return load_ref(self.spec[field], self.folder)
        except UserError as e:
            raise UserError(f"{self.source}: row {self.name!r} field {field!r}: {e}") from e

    def public(self) -> dict[str, Any]:
        """What a job needs of the row (its settings travel through params:, so a changed row reruns its jobs).
        A folder inside the repository is named relative to it, so moving a clone reruns nothing."""
        folder = self.folder
        if folder is not None and folder.resolve().is_relative_to(REPO):
            folder = folder.resolve().relative_to(REPO)
        return {"name": self.name, "label": self.label, **self.spec, "folder": str(folder or "")}


def load_ref(ref: str, folder: str | Path | None = None) -> Any:
    """ "package.module:object", or "file.py:object" relative to a row folder (a user's own builder)."""
    module, _, obj = ref.partition(":")
    if not module.endswith(".py"):
        return load_object(ref)
    if not folder:
        raise UserError(f"{ref!r}: a file reference needs a row folder")
    folder = Path(folder)
    if not folder.is_absolute() and (REPO / folder).is_dir():  # a row folder of the repository (Row.public)
        folder = REPO / folder
    path = folder / module
    spec = importlib.util.spec_from_file_location(f"alignrepro_row_{folder.name}_{path.stem}", path)
    if spec is None or not path.is_file():
        raise UserError(f"{path} does not exist")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not hasattr(mod, obj):
        raise UserError(f"{path} has no {obj!r}")
    return getattr(mod, obj)


def _read_folder_row(path: Path) -> Row:
    from alignrepro.config import load_yaml

    data = load_yaml(path)
    if "paper" not in data or "label" not in data:
        raise UserError(f"{path}: a row folder's row.yaml needs `paper` and `label`")
    spec = {k: v for k, v in data.items() if k not in _COMMON}
    return Row(
        paper=data["paper"],
        name=data.get("name", path.parent.name),
        label=data["label"],
        spec=spec,
        source=path,
        enabled=bool(data.get("enabled", True)),
    )


def row_folders(row_dirs: list[str | Path] = ()) -> list[Path]:
    """Every row.yaml: under each paper's rows/ folder, then under the config's `row_dirs`."""
    found = sorted(p for paper in discover().values() for p in (paper.folder / "rows").glob(f"*/{ROW_FILE}"))
    for d in row_dirs:
        if not Path(d).is_dir():
            raise UserError(f"config key 'row_dirs': {d} is not a folder")
        found += sorted(Path(d).glob(f"*/{ROW_FILE}"))
    return found


def paper_rows(paper: str, row_dirs: list[str | Path] = ()) -> dict[str, Row]:
    """Every row of a paper (its manifest's, then the row folders'), checked; enabled or not."""
    manifest = discover()[paper]
    rows: dict[str, Row] = {}
    for name, entry in manifest.rows.items():
        spec = {k: v for k, v in entry.items() if k not in _COMMON}
        rows[name] = Row(paper, name, entry["label"], spec, manifest.folder / "paper.yaml")
    for path in row_folders(row_dirs):
        row = _read_folder_row(path)
        if row.paper != paper:
            if row.paper not in discover():
                raise UserError(f"{path}: unknown paper {row.paper!r}. Available: {', '.join(discover())}")
            continue
        if row.name in rows:
            raise UserError(f"{path}: row {row.name!r} is already declared in {rows[row.name].source}")
        rows[row.name] = row
    for row in rows.values():
        check(row, manifest.row_schema, manifest.row_refs)
    return rows


def check(row: Row, schema: dict[str, Any], refs: tuple[str, ...]) -> None:
    """The row's fields against the paper's row schema, and every builder it names importable."""
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(row.spec), key=lambda e: list(e.path))
    if errors:
        where = ".".join(str(p) for p in errors[0].absolute_path) or "<row>"
        raise UserError(f"{row.source}: row {row.name!r} field '{where}': {errors[0].message}")
    for field in refs:
        if field in row.spec:
            row.load(field)  # fails now, naming the row, rather than in a job an hour later


def enabled(paper: str, chosen: list[str], row_dirs: list[str | Path] = (), table: str | None = None) -> list[Row]:
    """The rows of one table a run trains: those the config lists (`chosen`, built-in rows) and every enabled folder
    row of that table (`table`: None, the rows without a `table` field)."""
    rows = {n: r for n, r in paper_rows(paper, row_dirs).items() if r.table == table}
    unknown = [n for n in chosen if n not in rows]
    if unknown:
        where = f" of {table}" if table else ""
        raise UserError(f"config key '{paper}' lists unknown rows{where} {unknown}. Available: {', '.join(rows)}")
    out = [rows[n] for n in chosen]
    out += [r for r in rows.values() if r.folder is not None and r.enabled and r.name not in chosen]
    return out
