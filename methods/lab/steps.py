"""LAB's data steps, one subcommand each (a rule each in rules.smk):

  taxonomy      validate every leaf (instructlab-schema) and record them: leaves.json (kinds, sources, licences)
  pipelines     the tier's copies of instructlab-sdg's own pipeline YAMLs (counts and sampling only), hashed
  sdg           one leaf through its library pipeline against the served teacher (alignrepro.serve, or a vLLM /
                OpenAI-compatible endpoint at full): records.jsonl, stages.json (rows in/out per stage)
  mmlu-bench    a knowledge leaf's MMLU-branch questions from the library's mmlu_bench pipeline: questions.jsonl
  foundational  the project's verifiable tasks as foundational-skill records (train) and held-out tasks (test)
  heldout       generated records split into training and held-out (held-out NLL), seeded, per leaf

`python -m alignrepro.methods.lab.steps --help`
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from pathlib import Path
from typing import Any

from alignrepro.data.records import save_records
from alignrepro.data.verifiable import generate_tasks
from alignrepro.errors import UserError
from alignrepro.io import atomic_write_json, read_jsonl, write_jsonl
from alignrepro.methods.lab import taxonomy as tax
from alignrepro.methods.lab.sdg import LAB_SYSTEM_PROMPT
from alignrepro.methods.lab.settings import SdgSettings, TaxonomySettings, TeacherSettings

log = logging.getLogger("lab.steps")


def load_leaves(spec: TaxonomySettings | dict[str, Any]) -> list[tax.Leaf]:
    spec = TaxonomySettings.from_dict(spec)
    if spec.source == "sdist":
        return tax.tiny_leaves(spec.leaves or tax.TINY_LEAVES)
    docs = Path(spec.documents) if spec.documents else None
    leaves = tax.load_taxonomy_dir(Path(spec.path), commit=spec.commit, documents_dir=docs)
    if spec.leaves:
        unknown = sorted(set(spec.leaves) - {leaf.name for leaf in leaves})
        if unknown:
            raise UserError(f"config key 'lab.taxonomy.leaves': {unknown} not in {spec.path}")
        leaves = [leaf for leaf in leaves if leaf.name in spec.leaves]
    return leaves


def leaf_summary(leaf: tax.Leaf) -> dict[str, Any]:
    return {"name": leaf.name, "kind": leaf.kind, "branch": leaf.branch, "taxonomy_path": leaf.taxonomy_path,
            "source": leaf.source, "schema_version": leaf.schema_version, "attribution": leaf.attribution,
            "seed_examples": len(leaf.qna.get("seed_examples") or []), "has_document": leaf.document is not None,
            "mmlu_branch_questions": len(leaf.mmlu_branch)}  # fmt: skip


def teacher_endpoint(teacher: TeacherSettings, model_dir: str | None, log_path: Path):
    """The teacher as an OpenAI-compatible endpoint: served here for `local`, a URL otherwise (vLLM at full)."""
    from alignrepro.serve import endpoint

    if teacher.server == "local":
        return endpoint({"backend": "local", "dtype": "float32", "max_batch": teacher.batch_size}, model_dir,
                        log_path=log_path)  # fmt: skip
    return endpoint({"backend": "openai", "base_url": teacher.base_url, "model": teacher.model})


def run_sdg(args: argparse.Namespace) -> None:
    """`sdg` (the leaf's training pairs) or `mmlu-bench` (a knowledge leaf's MMLU-branch questions)."""
    import openai

    from alignrepro.methods.lab.sdg import run_leaf, run_mmlu_bench
    from alignrepro.methods.lab.sdg_pipelines import load_pipelines

    spec = TaxonomySettings.from_dict(json.loads(args.taxonomy_json))
    leaf = next((lf for lf in load_leaves(spec.with_(leaves=[args.leaf])) if lf.name == args.leaf), None)
    if leaf is None:
        raise UserError(f"leaf {args.leaf!r} not found")
    teacher = TeacherSettings.from_dict(json.loads(args.teacher_json))
    sdg = SdgSettings.from_dict(json.loads(args.sdg_json))
    pipelines = load_pipelines(args.pipelines)
    with teacher_endpoint(teacher, args.teacher_model, args.out / "teacher.log") as ep:
        client = openai.OpenAI(base_url=ep.base_url, api_key="EMPTY", timeout=3600, max_retries=2)
        run = run_leaf if args.cmd == "sdg" else run_mmlu_bench
        result = run(leaf, pipelines, client, ep.model, args.out, model_family=teacher.family,
                     chunk_word_count=sdg.chunk_word_count, max_chunks=sdg.max_chunks,
                     batch_size=teacher.batch_size)  # fmt: skip
    log.info("leaf %s: %d %s", leaf.name, len(getattr(result, "records", result)), args.cmd)


def foundational(n_train: int, n_test: int, seed: int) -> tuple[list[dict[str, Any]], list]:
    """Verifiable tasks standing in for the paper's public foundational sets (FLAN, MAmmoTH, …; not offline): the
    training tasks as messages records answered with their gold, the held-out ones as records for the oracle."""
    tasks = generate_tasks(n_train + n_test, seed, id_prefix="labf")
    train = [{"id": f"lab/foundational/{t.id}", "leaf": "foundational", "kind": "foundational",
              "branch": "foundational_skills", "taxonomy_path": f"foundational_skills/verifiable/{t.task}",
              "messages": [{"role": "system", "content": LAB_SYSTEM_PROMPT},
                           {"role": "user", "content": t.instruction},
                           {"role": "assistant", "content": f"The answer is {t.reference}."}]}
             for t in tasks[:n_train]]  # fmt: skip
    return train, tasks[n_train:]


def split_heldout(records: list[dict[str, Any]], fraction: float, seed: int) -> tuple[list, list]:
    """Per leaf, a seeded `fraction` of its records (at least one when it has two or more) is held out."""
    by_leaf: dict[str, list] = {}
    for r in records:
        by_leaf.setdefault(r["leaf"], []).append(r)
    train, held = [], []
    for name, rows in sorted(by_leaf.items()):
        k = min(len(rows) - 1, max(1, round(fraction * len(rows)))) if fraction > 0 and len(rows) > 1 else 0
        picked = set(random.Random(f"{seed}:{name}").sample(range(len(rows)), k))
        for i, r in enumerate(rows):
            (held if i in picked else train).append(r)
    return train, held


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m alignrepro.methods.lab.steps", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("taxonomy", help="validate the leaves; write leaves.json")
    a.add_argument("--taxonomy-json", required=True, help="config lab.taxonomy as JSON")
    a.add_argument("--out", type=Path, required=True)
    b = sub.add_parser("pipelines", help="the tier's copies of the library's pipeline YAMLs")
    b.add_argument("--sdg-json", required=True, help="config lab.sdg as JSON")
    b.add_argument("--out-dir", type=Path, required=True)
    for name, what, outputs in (
        ("sdg", "one leaf through its pipeline against the served teacher", "records.jsonl"),
        ("mmlu-bench", "a knowledge leaf's MMLU-branch questions", "questions.jsonl"),
    ):
        c = sub.add_parser(name, help=what)
        c.add_argument("--leaf", required=True)
        c.add_argument("--taxonomy-json", required=True)
        c.add_argument("--teacher-json", required=True, help="config lab.teacher as JSON")
        c.add_argument("--teacher-model", help="server local: the teacher's model folder")
        c.add_argument("--sdg-json", required=True)
        c.add_argument("--pipelines", type=Path, required=True, help="the pipelines step's folder")
        c.add_argument("--out", type=Path, required=True, help=f"the leaf's folder: {outputs}, stages.json, ...")
    d = sub.add_parser("foundational", help="verifiable tasks as foundational-skill records")
    d.add_argument("--train", type=int, required=True)
    d.add_argument("--test", type=int, required=True)
    d.add_argument("--seed", type=int, required=True)
    d.add_argument("--out-dir", type=Path, required=True)
    e = sub.add_parser("heldout", help="split generated records into training and held-out")
    e.add_argument("--records", type=Path, nargs="+", required=True)
    e.add_argument("--fraction", type=float, required=True)
    e.add_argument("--seed", type=int, required=True)
    e.add_argument("--out-dir", type=Path, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.cmd == "taxonomy":
        leaves = load_leaves(json.loads(args.taxonomy_json))
        atomic_write_json(args.out, {"leaves": [leaf_summary(leaf) for leaf in leaves]})
    elif args.cmd == "pipelines":
        from alignrepro.methods.lab.sdg_pipelines import tier_overrides, write_pipelines

        write_pipelines(args.out_dir, tier_overrides(**SdgSettings.from_dict(json.loads(args.sdg_json)).overrides()))
    elif args.cmd in ("sdg", "mmlu-bench"):
        run_sdg(args)
    elif args.cmd == "foundational":
        train, test = foundational(args.train, args.test, args.seed)
        args.out_dir.mkdir(parents=True, exist_ok=True)
        write_jsonl(args.out_dir / "foundational_train.jsonl", train)
        save_records(args.out_dir / "foundational_test.jsonl", test)
    else:
        records = [r for path in args.records for r in read_jsonl(path)]
        train, held = split_heldout(records, args.fraction, args.seed)
        args.out_dir.mkdir(parents=True, exist_ok=True)
        write_jsonl(args.out_dir / "train.jsonl", train)
        write_jsonl(args.out_dir / "heldout.jsonl", held)


if __name__ == "__main__":
    main()
