"""LAB's synthetic data generation for one taxonomy leaf (paper §3.2), with InstructLab's own pipelines and blocks.

A leaf becomes the library's pipeline input through the library's own helpers (instructlab.sdg.utils.taxonomy:
`_skill_leaf_node_to_samples`, `map_chunks_to_icls`, `_enrich_metadata`), fed the seed records its
`_read_taxonomy_file` would build. The derived pipeline (sdg_pipelines.py) then runs block by block, each block through
the library's own step (`Pipeline._generate_single` on a one-block pipeline: generate, drop_columns, drop_duplicates),
so rows in/out are recorded per stage. Running the blocks of a leaf one after another over the whole leaf equals the
library's unbatched run; its batched mode runs the chain per batch of 8 input rows, so de-duplication there is per
batch (here: per leaf). Requests still carry at most `batch_size` prompts. An empty stage is a UserError naming the
leaf and the stage (the library would return an empty dataset and log a warning).

Knowledge documents: instructlab-sdg 0.8.3 converts and chunks with docling (HybridChunker, 500 tokens; its
`chunk_word_count` is passed but unused). docling is not used here: `chunk_words` packs whole paragraphs up to
`chunk_word_count` words (ilab's default 1000). A leaf shipped in chunks (tonsils) is chunked within each shipped
chunk. Each chunk is paired with every seed context and its 3 Q&A, as the library does.

A run writes into out_dir: input.jsonl (the pipeline input), records.jsonl (messages), stages.json (rows per stage).

MMLU-branch questions of a knowledge leaf (`run_mmlu_bench`): the library's `eval/mmlu_bench.yaml` on the same
pipeline input, then its own `_post_process_mcq` (four options, a lettered answer), as ilab's generate_data does for
every knowledge leaf; written as questions.jsonl with the answer as a letter (its class_encode_column numbers only the
letters present).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import datasets
import yaml

from alignrepro.errors import UserError
from alignrepro.io import atomic_write_json, write_jsonl
from alignrepro.methods.lab import sdg_shim
from alignrepro.methods.lab.sdg_pipelines import KIND_PIPELINE, DerivedPipeline
from alignrepro.methods.lab.taxonomy import Leaf

# The system prompt of the LAB models (Merlinite/Labradorite model cards; lab.md §1.4).
LAB_SYSTEM_PROMPT = (
    "You are an AI language model developed by IBM Research. You are a cautious assistant. You carefully follow "
    "instructions. You are helpful and harmless and you follow ethical guidelines and promote positive behavior."
)
DEFAULT_CHUNK_WORD_COUNT = 1000  # ilab's default
KNOWLEDGE_METADATA = ("domain", "document_outline", "document", "raw_document", "dataset_type")
SKILL_METADATA = ("task_description", "seed_question", "seed_response", "seed_context", "context")


@dataclass(frozen=True)
class Stage:
    block: str
    type: str
    rows_in: int
    rows_out: int
    detail: str  # what the block does (a filter's rule, a generator's prompt config)


@dataclass
class LeafResult:
    leaf: str
    kind: str
    pipeline: str
    pipeline_sha256: str
    records: list[dict[str, Any]]
    stages: list[Stage]


# ---- documents ---------------------------------------------------------------------------------------------------


def chunk_words(text: str, chunk_word_count: int = DEFAULT_CHUNK_WORD_COUNT) -> list[str]:
    """Whole paragraphs packed into chunks of at most chunk_word_count words (a longer paragraph is cut by words)."""
    if chunk_word_count < 1:
        raise UserError(f"chunk_word_count must be >= 1, got {chunk_word_count}")
    pieces: list[list[str]] = []
    for para in re.split(r"\n\s*\n", text):
        words = para.split()
        pieces += [words[i : i + chunk_word_count] for i in range(0, len(words), chunk_word_count)]
    chunks: list[str] = []
    current: list[list[str]] = []
    size = 0
    for piece in pieces:
        if current and size + len(piece) > chunk_word_count:
            chunks.append("\n\n".join(" ".join(p) for p in current))
            current, size = [], 0
        current.append(piece)
        size += len(piece)
    if current:
        chunks.append("\n\n".join(" ".join(p) for p in current))
    return chunks


def spread(items: list[str], k: int | None) -> list[str]:
    """At most k items evenly spaced over the list, first and last included, in order (None: all of them)."""
    if k is None or len(items) <= k:
        return list(items)
    if k < 1:
        raise UserError(f"max_chunks must be >= 1 or null, got {k}")
    if k == 1:
        return items[:1]
    return [items[round(i * (len(items) - 1) / (k - 1))] for i in range(k)]


def document_chunks(
    leaf: Leaf, chunk_word_count: int = DEFAULT_CHUNK_WORD_COUNT, max_chunks: int | None = None
) -> list[str]:
    """The leaf's document in chunks; with max_chunks, that many spread over the document (a tier's budget: every
    chunk costs the teacher a spellcheck and a knowledge generation per seed example)."""
    if leaf.kind != "knowledge":
        return []
    if not leaf.document:
        raise UserError(f"knowledge leaf {leaf.name!r} ({leaf.source}) has no document (its repo is not available)")
    chunks = [c for part in (leaf.chunks or (leaf.document,)) for c in chunk_words(part, chunk_word_count)]
    return spread(chunks, max_chunks)


# ---- leaf -> pipeline input ------------------------------------------------------------------------------------------


def seed_records(leaf: Leaf) -> list[dict[str, Any]]:
    """The records instructlab.sdg.utils.taxonomy._read_taxonomy_file builds from a leaf's seed examples."""
    tax_path = "->".join(leaf.taxonomy_path.split("/"))
    qna = leaf.qna
    out = []
    for seed in qna["seed_examples"]:
        if "questions_and_answers" in seed:
            out.append(
                {
                    "questions_and_answers": seed["questions_and_answers"],
                    "context": seed.get("context", ""),
                    "taxonomy_path": tax_path,
                    "filepaths": None,
                    "domain": qna.get("domain"),
                    "document_outline": qna.get("document_outline"),
                }
            )
        else:
            out.append(
                {
                    "instruction": seed.get("question"),
                    "input": seed.get("context", ""),
                    "output": seed.get("answer"),
                    "taxonomy_path": tax_path,
                    "task_description": qna.get("task_description"),
                    "domain": qna.get("domain"),
                }
            )
    return out


def leaf_samples(
    leaf: Leaf, chunk_word_count: int = DEFAULT_CHUNK_WORD_COUNT, max_chunks: int | None = None
) -> list[dict[str, Any]]:
    """The pipeline input of a leaf, built by the library's own helpers."""
    helpers = sdg_shim.sdg().taxonomy
    node = seed_records(leaf)
    if leaf.kind == "knowledge":
        samples = helpers.map_chunks_to_icls(document_chunks(leaf, chunk_word_count, max_chunks), node)
    else:
        samples = helpers._skill_leaf_node_to_samples(node)
    return helpers._enrich_metadata(samples, node)


# ---- running -----------------------------------------------------------------------------------------------------


def describe_block(pipe: DerivedPipeline, block: dict[str, Any]) -> str:
    cfg = block.get("config", {})
    if block["type"] == "FilterByValueBlock":
        return f"keep {cfg['filter_column']} {cfg['operation']} {cfg['filter_value']!r}"
    if "config_path" in cfg:
        prompt = (pipe.library_path.parent / cfg["config_path"]).resolve()
        return f"prompt {prompt.parent.name}/{prompt.name} -> {', '.join(cfg.get('output_cols', []))}"
    return ", ".join(f"{k}={v}" for k, v in cfg.items())


def _why_empty(pipe: DerivedPipeline, block: dict[str, Any]) -> str:
    cfg = block.get("config", {})
    if block["type"] == "FilterByValueBlock":
        return f"filter {block['name']} ({describe_block(pipe, block)})"
    if "config_path" not in cfg:
        return f"{block['type']} {block['name']}"
    if cfg.get("parser_kwargs", {}).get("parser_name") == "custom":
        expected = "text matching its parsing_pattern"
    else:
        prompt = yaml.safe_load((pipe.library_path.parent / cfg["config_path"]).read_text(encoding="utf-8"))
        tags = [f"{s}…{e}" for s, e in zip(prompt.get("start_tags", []), prompt.get("end_tags", []), strict=False)]
        expected = f"every tag pair of {tags}" if any(t != "…" for t in tags) else "any text"
    return f"generator {block['name']} ({describe_block(pipe, block)}; the teacher's outputs lacked {expected})"


def to_records(leaf: Leaf, rows: list[dict[str, Any]], system_prompt: str | None) -> list[dict[str, Any]]:
    """Messages records (the library's question/response helpers; empty answers dropped as its _gen_train_data)."""
    mix = sdg_shim.sdg().datamixing
    keys = KNOWLEDGE_METADATA if leaf.kind == "knowledge" else SKILL_METADATA
    records = []
    for row in rows:
        user = mix._unescape(mix._get_question_hack(row))
        assistant = mix._unescape(mix._get_response_hack(row))
        if not user or not assistant:
            continue
        system = [{"role": "system", "content": system_prompt}] if system_prompt else []
        records.append(
            {
                "id": f"lab/{leaf.name}/{len(records):05d}",
                "leaf": leaf.name,
                "kind": leaf.kind,
                "branch": leaf.branch,
                "taxonomy_path": leaf.taxonomy_path,
                "messages": [*system, {"role": "user", "content": user}, {"role": "assistant", "content": assistant}],
                "metadata": {k: row[k] for k in keys if row.get(k) is not None},
            }
        )
    return records


def _report(out_dir: Path, leaf: Leaf, pipe: DerivedPipeline, stages: list[Stage], records: int | None) -> None:
    atomic_write_json(
        out_dir / "stages.json",
        {
            "leaf": leaf.name,
            "kind": leaf.kind,
            "source": leaf.source,
            "pipeline": pipe.name,
            "pipeline_sha256": pipe.sha256,
            "stages": [asdict(s) for s in stages],
            "records": records,
        },
    )


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """No datasets progress bar per block and batch (hundreds per leaf) in the job log."""
    shown = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if shown:
            datasets.enable_progress_bars()


def rows_per_stage(stages: list[Stage]) -> str:
    """In the error itself: Snakemake removes a failed job's outputs, stages.json with them."""
    return ", ".join(f"{s.block} {s.rows_in}→{s.rows_out}" for s in stages)


def _run_blocks(leaf: Leaf, pipe: DerivedPipeline, ctx: Any, data: Any, stages: list[Stage], out_dir: Path) -> Any:
    lib = sdg_shim.sdg()
    for block in pipe.blocks:
        step = lib.Pipeline(ctx, str(pipe.library_path), [block])
        rows_in = len(data)
        try:
            data = step._generate_single(data)  # the library's own block step, on the whole leaf
        except lib.PipelineBlockError as e:
            _report(out_dir, leaf, pipe, stages, None)
            raise UserError(f"leaf {leaf.name!r}: SDG stage {block['name']} failed: {e.exception_message}") from e
        stages.append(Stage(block["name"], block["type"], rows_in, len(data), describe_block(pipe, block)))
        if len(data) == 0:
            _report(out_dir, leaf, pipe, stages, None)
            raise UserError(
                f"leaf {leaf.name!r} ({pipe.name} pipeline): {_why_empty(pipe, block)} left 0 of {rows_in} rows "
                f"(rows per stage: {rows_per_stage(stages)})"
            )
    return data


def run_leaf(
    leaf: Leaf,
    pipelines: dict[str, DerivedPipeline],
    client: Any,
    model_id: str,
    out_dir: str | Path,
    *,
    model_family: str | None = None,
    chunk_word_count: int = DEFAULT_CHUNK_WORD_COUNT,
    max_chunks: int | None = None,
    system_prompt: str | None = LAB_SYSTEM_PROMPT,
    batch_size: int = 8,
) -> LeafResult:
    """Run the leaf's library pipeline (freeform / grounded skills, knowledge) against the teacher behind `client`
    (an openai.OpenAI on an OpenAI-compatible /v1/completions endpoint). Writes input.jsonl, records.jsonl and
    stages.json into out_dir; raises a UserError naming the leaf and the stage when a stage leaves no rows."""
    if KIND_PIPELINE[leaf.kind] not in pipelines:
        raise UserError(f"leaf {leaf.name!r}: no derived {KIND_PIPELINE[leaf.kind]} pipeline was given")
    pipe = pipelines[KIND_PIPELINE[leaf.kind]]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = sdg_shim.make_context(client, model_id, model_family, batch_size=batch_size)
    samples = leaf_samples(leaf, chunk_word_count, max_chunks)
    write_jsonl(out_dir / "input.jsonl", samples)
    data = datasets.Dataset.from_list(samples)
    stages: list[Stage] = []
    with _quiet_datasets():
        data = _run_blocks(leaf, pipe, ctx, data, stages, out_dir)
    records = to_records(leaf, data.to_list(), system_prompt)
    stages.append(Stage("to_messages", "messages", len(data), len(records), "drop rows with an empty question/answer"))
    _report(out_dir, leaf, pipe, stages, len(records))
    if not records:
        raise UserError(f"leaf {leaf.name!r}: every generated pair had an empty question or answer")
    write_jsonl(out_dir / "records.jsonl", records)
    return LeafResult(leaf.name, leaf.kind, pipe.name, pipe.sha256, records, stages)


def keep_rate_table(reports: list[dict[str, Any]]) -> str:
    """Markdown: rows in/out per stage and leaf, from stages.json contents (keep = out/in; > 1 for generators)."""
    lines = ["| leaf | pipeline | stage | type | in | out | out/in |", "|---|---|---|---|---|---|---|"]
    for rep in reports:
        for s in rep["stages"]:
            ratio = f"{s['rows_out'] / s['rows_in']:.2f}" if s["rows_in"] else "-"
            row = (rep["leaf"], rep["pipeline"], s["block"], s["type"], s["rows_in"], s["rows_out"], ratio)
            lines.append("| " + " | ".join(map(str, row)) + " |")
    return "\n".join(lines) + "\n"


def run_mmlu_bench(
    leaf: Leaf,
    pipelines: dict[str, DerivedPipeline],
    client: Any,
    model_id: str,
    out_dir: str | Path,
    *,
    model_family: str | None = None,
    chunk_word_count: int = DEFAULT_CHUNK_WORD_COUNT,
    max_chunks: int | None = None,
    batch_size: int = 8,
) -> list[dict[str, Any]]:
    """MMLU-branch rows for a knowledge leaf from the teacher: writes input.jsonl, stages.json, questions.jsonl
    ({id, question, choices, answer letter, subject}); a UserError when no question survives the library's filters."""
    if leaf.kind != "knowledge":
        raise UserError(f"leaf {leaf.name!r}: MMLU-branch questions come from knowledge leaves, not {leaf.kind}")
    if "mmlu_bench" not in pipelines:
        raise UserError(f"leaf {leaf.name!r}: no derived mmlu_bench pipeline was given")
    pipe, out_dir = pipelines["mmlu_bench"], Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = sdg_shim.make_context(client, model_id, model_family, batch_size=batch_size)
    samples = leaf_samples(leaf, chunk_word_count, max_chunks)
    write_jsonl(out_dir / "input.jsonl", samples)
    stages: list[Stage] = []
    with _quiet_datasets():
        data = _run_blocks(leaf, pipe, ctx, datasets.Dataset.from_list(samples), stages, out_dir)
        mcq = sdg_shim.sdg().eval_data._post_process_mcq(data)
    stages.append(Stage("post_process_mcq", "eval_data", len(data), len(mcq), "four options A-D, a lettered answer"))
    _report(out_dir, leaf, pipe, stages, len(mcq))
    if not len(mcq):
        raise UserError(f"leaf {leaf.name!r}: no generated MCQ has four options and a lettered answer "
                        f"(rows per stage: {rows_per_stage(stages)})")  # fmt: skip
    letter = mcq.features["answer"].int2str
    rows = [
        {"id": f"{leaf.name}/mmlu_bench/{i:03d}", "question": r["question"], "choices": r["choices"],
         "answer": letter(r["answer"]), "subject": r.get("subject") or leaf.name}
        for i, r in enumerate(mcq)
    ]  # fmt: skip
    write_jsonl(out_dir / "questions.jsonl", rows)
    return rows
