"""LAB's SDG: instructlab-sdg's own pipelines (through the shim) against a canned OpenAI-compatible endpoint."""

from __future__ import annotations

import hashlib
import json
import re
import sys

import httpx2
import openai
import pytest
import yaml

from alignrepro.errors import UserError
from alignrepro.methods.lab import sdg, sdg_pipelines, sdg_shim, taxonomy

TEACHER = "ci-random-llama"


def canned_client(script, calls: list):
    """An openai.OpenAI whose transport answers /v1/completions from `script(prompt, n) -> n texts`, n choices per
    prompt in prompt order (what the library's batched path expects)."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        assert request.url.path.endswith("/completions")
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        n = body.get("n", 1)
        calls.append(body)
        choices = []
        for p in prompts:
            texts = script(p, n)
            assert len(texts) == n
            choices += [{"index": len(choices), "text": t, "finish_reason": "stop", "logprobs": None} for t in texts]
        payload = {"id": "cmpl-canned", "object": "text_completion", "created": 0, "model": body["model"]}
        return httpx2.Response(200, json={**payload, "choices": choices})

    transport = httpx2.MockTransport(handler)
    return openai.OpenAI(
        api_key="canned", base_url="http://canned.invalid/v1", http_client=httpx2.Client(transport=transport)
    )


def tag(name: str, text: str) -> str:
    return f"[Start of {name}]\n{text}\n[End of {name}]"


def token(pattern: str, prompt: str) -> re.Match:
    found = re.findall(pattern, prompt)
    assert found, (pattern, prompt[-300:])
    return re.search(pattern, prompt)


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory):
    overrides = sdg_pipelines.tier_overrides(questions_per_seed=3, contexts_per_seed=2, questions_per_context=2)
    return sdg_pipelines.write_pipelines(tmp_path_factory.mktemp("pipelines"), overrides)


# ---- freeform skills ---------------------------------------------------------------------------------------------


def freeform_script(leaf, score_all_zero: bool = False, tagless: bool = False):
    seeds = [s["question"].strip() for s in leaf.qna["seed_examples"]]

    def script(p: str, n: int) -> list[str]:
        if "diverse questions" in p:
            i = next(k for k, q in enumerate(seeds) if q in p)
            if tagless:
                return [f"1. sib{i} good?"] * n
            qs = [f"sib{i} good?", f"sib{i} bad?", f"sib{i} good?"]  # the repeat is de-duplicated
            return ["\n".join(tag("Question", q) for q in qs)] * n
        m = re.search(r"sib(\d) (good|bad)\?", p)
        if "evaluate the synthetic questions" in p:
            score = 0 if score_all_zero or m.group(2) == "bad" else 1
            return [tag("Evaluation", "ok") + "\n" + tag("Score", score)] * n
        if "generate a response" in p:
            return [tag("Response", f"answer to sib{m.group(1)}")] * n
        if "evaluate the quality of the answer" in p:
            i = int(m.group(1))
            return [tag("Evaluation", "fine") + "\n" + tag("Score", 1 if i == 0 else 3 if i < 3 else 2)] * n
        raise AssertionError(p[:500])

    return script


def test_freeform_pipeline_keeps_exactly_the_expected_rows(pipelines, tmp_path):
    leaf = taxonomy.sdist_leaf("siblings")
    calls: list = []
    client = canned_client(freeform_script(leaf), calls)
    result = sdg.run_leaf(leaf, pipelines, client, TEACHER, tmp_path, batch_size=4)
    users = [r["messages"][1]["content"] for r in result.records]
    # sibN bad? scored 0 -> removed; sib0's pair rated 1 -> removed; ratings 2 and 3 kept
    assert users == [f"sib{i} good?" for i in (1, 2, 3, 4)]
    assert [r["messages"][2]["content"] for r in result.records] == [f"answer to sib{i}" for i in (1, 2, 3, 4)]
    assert result.records[0]["messages"][0] == {"role": "system", "content": sdg.LAB_SYSTEM_PROMPT}
    assert {r["leaf"] for r in result.records} == {"siblings"} and {r["kind"] for r in result.records} == {
        "freeform_skill"
    }
    counts = [(s.block, s.rows_in, s.rows_out) for s in result.stages]
    assert counts == [
        ("gen_questions", 5, 10),  # 3 parsed per seed, the repeat dropped (drop_duplicates)
        ("eval_questions", 10, 10),
        ("filter_questions", 10, 5),
        ("gen_responses", 5, 5),
        ("evaluate_qa_pair", 5, 5),
        ("filter_qa_pair", 5, 4),
        ("to_messages", 4, 4),
    ]
    # the tier's settings reach the endpoint; prompts are wrapped in the ChatML family; <= batch_size per request
    gen = [c for c in calls if "diverse questions" in c["prompt"][0]]
    assert gen and all(c["temperature"] == 0.7 and "come up with a set of 3 diverse" in c["prompt"][0] for c in gen)
    assert all(c["prompt"][0].startswith("<|im_start|>user\n") for c in calls)
    assert all(len(c["prompt"]) <= 4 for c in calls)
    assert all(c["temperature"] == 0 for c in calls if "evaluate" in c["prompt"][0])
    written = json.loads((tmp_path / "stages.json").read_text())
    assert written["records"] == 4 and written["pipeline_sha256"] == pipelines["freeform_skills"].sha256
    assert len((tmp_path / "records.jsonl").read_text().splitlines()) == 4
    table = sdg.keep_rate_table([written])
    assert "| siblings | freeform_skills | filter_questions | FilterByValueBlock | 10 | 5 | 0.50 |" in table
    assert not [m for m in sys.modules if m.startswith("docling")]


def test_an_empty_filter_stage_names_the_leaf_and_the_filter(pipelines, tmp_path):
    leaf = taxonomy.sdist_leaf("siblings")
    client = canned_client(freeform_script(leaf, score_all_zero=True), [])
    with pytest.raises(UserError, match=r"leaf 'siblings'.*filter filter_questions \(keep score eq 1\.0\).*0 of 10"):
        sdg.run_leaf(leaf, pipelines, client, TEACHER, tmp_path)
    stages = json.loads((tmp_path / "stages.json").read_text())["stages"]
    assert stages[-1]["block"] == "filter_questions" and stages[-1]["rows_out"] == 0
    assert not (tmp_path / "records.jsonl").exists()


def test_a_generator_without_parsable_output_is_an_error(pipelines, tmp_path):
    leaf = taxonomy.sdist_leaf("siblings")
    client = canned_client(freeform_script(leaf, tagless=True), [])
    with pytest.raises(UserError, match=r"leaf 'siblings'.*generator gen_questions.*\[Start of Question\]"):
        sdg.run_leaf(leaf, pipelines, client, TEACHER, tmp_path)


# ---- grounded skills ---------------------------------------------------------------------------------------------


def test_grounded_pipeline_generates_contexts_then_filters(pipelines, tmp_path):
    leaf = taxonomy.sdist_leaf("punctuation")
    seeds = [s["context"].strip()[:60] for s in leaf.qna["seed_examples"]]

    def script(p: str, n: int) -> list[str]:
        if "diverse context" in p:
            i = next(k for k, c in enumerate(seeds) if c in p)
            return [tag("Context", f"ctx{i}{j} text.") for j in range(n)]
        if "diverse questions" in p:
            m = token(r"ctx(\d)(\d) text", p)
            return ["\n".join(tag("Question", f"q{m[1]}{m[2]} {w}?") for w in ("good", "bad"))] * n
        m = re.search(r"q(\d)(\d) (good|bad)\?", p)
        if "evaluate the synthetic questions" in p or "evaluate the question" in p:
            return [tag("Evaluation", "e") + "\n" + tag("Score", int(m[3] == "good"))] * n
        if "generate a response" in p:
            return [tag("Response", f"fixed ctx{m[1]}{m[2]}")] * n
        if "quality of the answer" in p:
            return [tag("Evaluation", "e") + "\n" + tag("Score", 1 if m[2] == "1" else 2)] * n
        raise AssertionError(p[:500])

    calls: list = []
    result = sdg.run_leaf(leaf, pipelines, canned_client(script, calls), TEACHER, tmp_path)
    # contexts j=1 rated 1 -> removed; "bad" questions scored 0 -> removed; context folded into the user turn
    assert [r["messages"][1]["content"] for r in result.records] == [f"ctx{i}0 text.\n\nq{i}0 good?" for i in range(5)]
    assert [r["messages"][2]["content"] for r in result.records] == [f"fixed ctx{i}0" for i in range(5)]
    assert [(s.block, s.rows_in, s.rows_out) for s in result.stages] == [
        ("gen_contexts", 5, 10),  # n=2 choices per prompt, in order
        ("gen_grounded_questions", 10, 20),
        ("eval_grounded_questions", 20, 20),
        ("filter_grounded_questions", 20, 10),
        ("gen_grounded_responses", 10, 10),
        ("evaluate_grounded_qa_pair", 10, 10),
        ("filter_grounded_qa_pair", 10, 5),
        ("combine_question_and_context", 5, 5),
        ("to_messages", 5, 5),
    ]
    ctx_calls = [c for c in calls if "diverse context" in c["prompt"][0]]
    assert all(c["n"] == 2 and c["temperature"] == 0.7 and c["seed"] == 42 for c in ctx_calls)


# ---- knowledge ---------------------------------------------------------------------------------------------------


def test_knowledge_pipeline_applies_faithfulness_relevancy_and_question_filters(pipelines, tmp_path):
    leaf = taxonomy.sdist_leaf("phoenix")
    words = 1500
    chunks = sdg.document_chunks(leaf, words)
    assert len(chunks) >= 2 and all(len(c.split()) <= words for c in chunks)
    rows = len(chunks) * len(leaf.qna["seed_examples"])

    def h(p: str) -> str:
        return hashlib.sha256(p.encode()).hexdigest()[:8]

    def script(p: str, n: int) -> list[str]:
        if "fixing spelling errors" in p:
            return [f"Corrected chunk {h(p)}"] * n
        if "educational question and answer pairs" in p:
            k = h(p)
            return ["\n".join(f"[QUESTION]\nWhat is k{k}{x}?\n[ANSWER]\nk{k}{x} says so.\n[END]" for x in "abcd")] * n
        m = re.search(r"k([0-9a-f]{8})([abcd])", p)
        if "corroborated by the given context" in p:
            return [tag("Explanation", "e") + "\n" + tag("Answer", "NO" if m[2] == "b" else "YES")] * n
        if "assess the relevance" in p:
            return [tag("Feedback", "f") + "\n" + tag("Score", 1 if m[2] == "c" else 2)] * n
        if "verify if it meets below requirements" in p:
            return [tag("Explanation", "e") + "\n" + tag("Rating", 0 if m[2] == "d" else 1)] * n
        raise AssertionError(p[:500])

    result = sdg.run_leaf(
        leaf, pipelines, canned_client(script, []), TEACHER, tmp_path, chunk_word_count=words, batch_size=32
    )
    # b: faithfulness NO, c: relevancy 1 of 2, d: question rated 0 -> only the "a" pair of each prompt survives
    assert [(s.block, s.rows_in, s.rows_out) for s in result.stages] == [
        ("duplicate_document_col", rows, rows),
        ("gen_spellcheck", rows, rows),
        ("flatten_auxiliary_columns", rows, 2 * rows),  # spellchecked and original chunk
        ("rename_to_document_column", 2 * rows, 2 * rows),
        ("gen_knowledge", 2 * rows, 8 * rows),
        ("eval_faithfulness_qa_pair", 8 * rows, 8 * rows),
        ("filter_faithfulness", 8 * rows, 6 * rows),
        ("eval_relevancy_qa_pair", 6 * rows, 6 * rows),
        ("filter_relevancy", 6 * rows, 4 * rows),
        ("eval_verify_question", 4 * rows, 4 * rows),
        ("filter_verify_question", 4 * rows, 2 * rows),
        ("to_messages", 2 * rows, 2 * rows),
    ]
    assert all(re.fullmatch(r"What is k[0-9a-f]{8}a\?", r["messages"][1]["content"]) for r in result.records)
    meta = [r["metadata"] for r in result.records]
    assert {m["dataset_type"] for m in meta} == {"spellcheck", "base_document"}
    assert {m["raw_document"] for m in meta} == set(chunks) and all(m["domain"] == "astronomy" for m in meta)
    assert len({r["id"] for r in result.records}) == len(result.records)
    assert not [m for m in sys.modules if m.startswith("docling")]


def test_knowledge_samples_pair_every_chunk_with_every_seed_context():
    leaf = taxonomy.sdist_leaf("tonsils")
    samples = sdg.leaf_samples(leaf, chunk_word_count=10_000)
    assert len(samples) == 6 * 5  # the 6 shipped chunks x 5 seed contexts
    first = samples[0]
    assert first["icl_document"] == leaf.qna["seed_examples"][0]["context"]
    assert first["icl_query_3"] == leaf.qna["seed_examples"][0]["questions_and_answers"][2]["question"]
    assert (
        first["leaf_node_type"] == "knowledge" and first["leaf_node_path"] == "knowledge_tonsils_overview_e2e-tonsils"
    )
    smaller = sdg.leaf_samples(leaf, chunk_word_count=300)
    assert len(smaller) > len(samples) and all(len(s["document"].split()) <= 300 for s in smaller)
    chunks = sdg.document_chunks(leaf, 300)
    two = sdg.leaf_samples(leaf, chunk_word_count=300, max_chunks=2)  # the tier's budget: first and last chunk
    assert [s["document"] for s in two] == [chunks[0]] * 5 + [chunks[-1]] * 5


def test_spread_keeps_order_and_ends():
    assert sdg.spread(list("abcdefg"), 3) == ["a", "d", "g"]
    assert sdg.spread(list("abc"), None) == sdg.spread(list("abc"), 5) == ["a", "b", "c"]
    assert sdg.spread(list("abc"), 1) == ["a"]
    with pytest.raises(UserError, match="max_chunks"):
        sdg.spread(list("abc"), 0)


def test_a_knowledge_leaf_without_its_document_cannot_run(pipelines, tmp_path):
    leaf = taxonomy.sdist_leaf("mbta")
    with pytest.raises(UserError, match="mbta.*no document"):
        sdg.run_leaf(leaf, pipelines, canned_client(lambda p, n: [""] * n, []), TEACHER, tmp_path)


def test_chunk_words_packs_paragraphs():
    text = "a b c\n\nd e\n\nf g h i j k l"
    assert sdg.chunk_words(text, 5) == ["a b c\n\nd e", "f g h i j", "k l"]
    assert sdg.chunk_words(text, 100) == ["a b c\n\nd e\n\nf g h i j k l"]


# ---- shim and derived pipelines ----------------------------------------------------------------------------------


def test_shim_imports_the_library_without_its_init_chain():
    lib = sdg_shim.sdg()
    assert lib.Pipeline.__module__ == "instructlab.sdg.pipeline"
    assert "chatml" in lib.PromptRegistry.get_registry()
    for absent in ("docling", "docling_core", "instructlab.sdg.generate_data", "xdg_base_dirs"):
        assert not [m for m in sys.modules if m == absent or m.startswith(absent + ".")], absent
    assert sdg_shim.model_family("HuggingFaceTB/SmolLM2-135M-Instruct") == "chatml"
    assert sdg_shim.model_family("mistralai/Mixtral-8x7B-Instruct-v0.1") == "mixtral"
    with pytest.raises(UserError, match="unknown prompt family"):
        sdg_shim.model_family("some-model")


def test_derived_pipelines_keep_every_block_and_filter(pipelines):
    for name, pipe in pipelines.items():
        source, original = sdg_pipelines.library_pipeline(name)
        ours = pipe.blocks
        assert [(b["name"], b["type"]) for b in ours] == [(b["name"], b["type"]) for b in original["blocks"]]
        for a, b in zip(ours, original["blocks"], strict=True):
            for key in ("drop_columns", "drop_duplicates"):
                assert a.get(key) == b.get(key)
            if b["type"] == "FilterByValueBlock":
                assert a["config"] == b["config"]
            else:
                assert a["config"].get("config_path") == b["config"].get("config_path")
                assert a["config"].get("parser_kwargs") == b["config"].get("parser_kwargs")
        assert sdg_pipelines.skeleton(ours) == sdg_pipelines.skeleton(original["blocks"])
    filters = {
        n: [
            (b["config"]["filter_column"], b["config"]["operation"], b["config"]["filter_value"])
            for b in p.blocks
            if "filter_column" in b["config"]
        ]
        for n, p in pipelines.items()
    }
    assert filters["freeform_skills"] == [("score", "eq", 1.0), ("score", "ge", 2.0)]
    assert filters["grounded_skills"] == [("score", "eq", 1.0), ("score", "ge", 2.0)]
    assert filters["knowledge"] == [("judgment", "eq", "YES"), ("score", "eq", 2.0), ("rating", "eq", 1.0)]
    free = {b["name"]: b["config"] for b in pipelines["freeform_skills"].blocks}
    assert free["gen_questions"]["batch_kwargs"] == {"num_samples": 3}
    assert free["gen_questions"]["gen_kwargs"] == {"temperature": 0.7}
    assert "gen_kwargs" not in free["eval_questions"]  # judges keep the library's greedy default


def test_derived_pipelines_are_hashed_and_checked(tmp_path):
    over = sdg_pipelines.tier_overrides(2, 1, 1, max_tokens=64, block_max_tokens={"gen_spellcheck": 300})
    found = sdg_pipelines.write_pipelines(tmp_path, over)
    manifest = json.loads((tmp_path / "pipelines.json").read_text())
    assert set(manifest["pipelines"]) == {"freeform_skills", "grounded_skills", "knowledge", "mmlu_bench"}
    assert manifest["library"]["wheel_sha256"] == sdg_shim.SDG_WHEEL[2]
    know = {b["name"]: b["config"] for b in found["knowledge"].blocks}
    assert (
        know["gen_spellcheck"]["gen_kwargs"]["max_tokens"] == 300
        and know["gen_knowledge"]["gen_kwargs"]["max_tokens"] == 64
    )
    assert found["knowledge"].sha256 == manifest["pipelines"]["knowledge"]["sha256"]
    # a filter edited by hand: the hash check and the block check both refuse it
    path = tmp_path / "freeform_skills.yaml"
    content = yaml.safe_load(path.read_text())
    content["blocks"][2]["config"]["filter_value"] = 0.0
    with pytest.raises(UserError, match="filter_questions differs"):
        sdg_pipelines.check_derived("freeform_skills", sdg_pipelines.library_pipeline("freeform_skills")[1], content)
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    with pytest.raises(UserError, match="changed since it was written"):
        sdg_pipelines.load_pipelines(tmp_path)
    with pytest.raises(UserError, match="no such block"):
        sdg_pipelines.write_pipelines(tmp_path / "x", {"knowledge": {"gen_questions": {"n": 2}}})
    with pytest.raises(UserError, match="cannot be overridden"):
        sdg_pipelines.write_pipelines(tmp_path / "x", {"knowledge": {"gen_knowledge": {"top_p": 0.9}}})
    with pytest.raises(UserError, match="has no sampling settings"):
        sdg_pipelines.write_pipelines(tmp_path / "x", {"knowledge": {"filter_relevancy": {"n": 2}}})
