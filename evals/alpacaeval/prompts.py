"""The shared AlpacaEval instruction set: the official file (805 instructions with reference outputs, AlpacaEval's
own JSON format, local or on the hub) or, offline, the project's held-out open instructions (CC0).

Writes the prompts and, when the file carries reference outputs, the reference "answers" (AlpacaEval 1's
text-davinci-003, or AlpacaEval 2's GPT-4-turbo baseline file). CLI: `python -m alignrepro.evals.alpacaeval.prompts`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from alignrepro.data.records import Record, save_records
from alignrepro.io import sha256_file

log = logging.getLogger(__name__)


def build(source: str, n: int | None, path: str | None = None, data_file: str | None = None, revision=None):
    if source == "shipped":
        from alignrepro.data.shipped import load_open_instructions

        records = load_open_instructions("test")  # never the train split, which papers may train on
    elif source == "file":
        from alignrepro.data.hub import load_alpaca_eval_set

        if not path:
            raise ValueError("evals.alpacaeval.prompts.path: required when source is 'file'")
        records = load_alpaca_eval_set(path, data_file or "alpaca_eval.json", revision)
    else:
        raise ValueError(f"evals.alpacaeval.prompts.source: {source!r} is not 'shipped' or 'file'")
    return records[:n] if n else records


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m alignrepro.evals.alpacaeval.prompts", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--source", choices=["shipped", "file"], required=True)
    ap.add_argument("--path", default=None, help="AlpacaEval JSON: a local file/folder or a hub dataset id")
    ap.add_argument("--data-file", default=None, help="file inside the folder/repo (default alpaca_eval.json)")
    ap.add_argument("--revision", default=None)
    ap.add_argument("--n", type=int, default=None, help="first N instructions only")
    ap.add_argument("--out", type=Path, required=True, help="prompts JSONL (records)")
    ap.add_argument("--reference-out", type=Path, default=None, help="reference outputs JSONL (file source only)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    records = build(args.source, args.n, args.path, args.data_file, args.revision)
    save_records(args.out, [Record(**{**r.to_dict(), "output": None}) for r in records])
    if args.reference_out is not None:
        missing = [r.id for r in records if r.reference is None]
        if missing:
            raise ValueError(f"{args.path}: {len(missing)} instructions have no reference output, e.g. {missing[:3]}")
        refs = [Record(**{**r.to_dict(), "output": r.reference}) for r in records]
        for r in refs:
            r.meta = {**r.meta, "generator": r.meta.get("generator", "reference")}
        save_records(args.reference_out, refs)
    log.info("%d AlpacaEval instructions -> %s (sha256 %s)", len(records), args.out, sha256_file(args.out)[:12])


if __name__ == "__main__":
    main()
