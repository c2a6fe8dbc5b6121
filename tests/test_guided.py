"""Guided decoding (alignrepro.guided): vLLM's `guided_regex` on the served teacher, and the regexes LAB derives from
instructlab-sdg's own prompt configs and filters (methods/lab/sdg_formats.py)."""

from __future__ import annotations

import re

import pytest

from alignrepro.prefix_cache import RequestError, Sampling, sampling_fields

EVALUATION = r"\s*\[Start of Evaluation\]\s*[^\[\s][^\[]*\[End of Evaluation\]"
SCORED = EVALUATION + r"\s*\[Start of Score\]\s*[0-9]\s*\[End of Score\]\s*"


@pytest.fixture(scope="module")
def engine(ci_model):
    from alignrepro.models import load_model, load_tokenizer
    from alignrepro.prefix_cache import Engine

    tok = load_tokenizer(ci_model, padding_side="left")
    return Engine(load_model(ci_model), tok, max_batch=4)


def _ids(engine, texts):
    return [engine.tok(t)["input_ids"] for t in texts]


def test_a_random_model_writes_the_format_and_finishes_within_max_tokens(engine, one_torch_thread):
    # The random model wants anything but the tags: only the guide makes each completion match, and its closing
    # phase makes it match within max_tokens (sampled rows too). The ci tokenizer is near character level and the
    # shortest match is 72 characters.
    prompts = _ids(engine, ["Rate this answer.", "Evaluate the question: what is 2 + 2?"])
    for max_tokens, temperature in ((100, 0.0), (130, 1.0)):
        s = Sampling(max_tokens=max_tokens, temperature=temperature, seed=3, regex=SCORED)
        choices = engine.complete(prompts, 2, s)
        assert len(choices) == 4
        for c in choices:
            assert re.fullmatch(SCORED, c.text), c.text
            assert c.tokens <= max_tokens and c.finish_reason == "stop"
    free = engine.complete(prompts, 1, Sampling(max_tokens=20, temperature=1.0, seed=3))
    assert not any(re.fullmatch(SCORED, c.text) for c in free)  # unguided, it does not


def test_the_guide_leaves_the_verdict_to_the_model(engine, one_torch_thread):
    # Sampled scores under the guide take more than one value: the format is fixed, the verdict is not.
    prompts = _ids(engine, [f"Question {k}: rate it." for k in range(6)])
    s = Sampling(max_tokens=100, temperature=1.0, seed=11, regex=SCORED)
    scores = {re.search(r"\[Start of Score\]\s*([0-9])", c.text).group(1) for c in engine.complete(prompts, 2, s)}
    assert len(scores) > 1


def test_request_fields(monkeypatch):
    assert sampling_fields({"guided_regex": "[0-9]"})["regex"] == "[0-9]"
    assert sampling_fields({"structured_outputs": {"regex": "(YES|NO)"}})["regex"] == "(YES|NO)"
    assert sampling_fields({})["regex"] is None
    with pytest.raises(RequestError) as e:
        sampling_fields({"guided_regex": "(unclosed"})
    assert e.value.param == "guided_regex"
    with pytest.raises(RequestError) as e:
        sampling_fields({"structured_outputs": {"json": {}}})
    assert e.value.param == "structured_outputs"


def _library_parse(pipeline: str, block_name: str, text: str) -> dict:
    """instructlab-sdg's own LLMBlock._parse on `text`, for the block of the library pipeline."""
    from alignrepro.methods.lab import sdg_pipelines, sdg_shim

    path, content = sdg_pipelines.library_pipeline(pipeline)
    block = next(b for b in content["blocks"] if b["name"] == block_name)
    cls, cfg = sdg_shim.sdg().LLMBlock, block["config"]
    parser = cls.__new__(cls)  # only the parsing state: no client, no pipeline context
    parser.block_config = cls._load_config(parser, str((path.parent / cfg["config_path"]).resolve()))
    parser.output_cols, parser.parser_name = cfg["output_cols"], (cfg.get("parser_kwargs") or {}).get("parser_name")
    parser.parsing_pattern = (cfg.get("parser_kwargs") or {}).get("parsing_pattern")
    parser.parser_cleanup_tags = (cfg.get("parser_kwargs") or {}).get("parser_cleanup_tags") or []
    return parser._parse(text)


EXAMPLES = {  # (pipeline, block): a completion in the derived format
    ("freeform_skills", "gen_questions"): "[Start of Question]\nWho?\n[End of Question]\n[Start of Question]\nWhy?\n"
    "[End of Question]",
    ("freeform_skills", "evaluate_qa_pair"): "[Start of Evaluation]\nFine.\n[End of Evaluation]\n[Start of Score]\n2\n"
    "[End of Score]",
    ("knowledge", "gen_knowledge"): "[QUESTION]\nWhat is X?\n[ANSWER]\nX is Y.\n[END]\n[QUESTION]\nAnd Z?\n[ANSWER]\n"
    "Z too.\n[END]",
    ("knowledge", "eval_faithfulness_qa_pair"): "[Start of Explanation]\nSupported.\n[End of Explanation]\n"
    "[Start of Answer]\nYES\n[End of Answer]",
    (
        "mmlu_bench",
        "gen_mmlu_knowledge",
    ): "[Start of Question]\nWhat is it?\nA) a\nB) b\nC) c\nD) d\n[End of Question]\n"
    "[Start of Answer]\nB) b\n[End of Answer]",
}


@pytest.mark.parametrize("where", sorted(EXAMPLES))
def test_derived_formats_are_what_the_library_parses(where):
    from alignrepro.methods.lab import sdg_pipelines

    overrides = sdg_pipelines.tier_overrides(2, 2, 1, guided=True)
    regex = overrides[where[0]][where[1]]["extra_body"]["guided_regex"]
    text = EXAMPLES[where]
    assert re.fullmatch(regex, text)
    parsed = _library_parse(*where, text)
    assert parsed and all(len(values) >= 1 and all(values) for values in parsed.values()), parsed
    # A completion that lacks a tag (what SmolLM2 wrote unguided) matches neither the format nor the parser.
    broken = text.replace("[End of", "[Finish of").replace("[END]", "").replace("[ANSWER]", "Answer:")
    assert not re.fullmatch(regex, broken)


def test_every_tagged_block_is_guided_and_verdicts_keep_their_range():
    from alignrepro.methods.lab import sdg_pipelines

    off = sdg_pipelines.tier_overrides(2, 2, 1)
    assert not any("extra_body" in b for p in off.values() for b in p.values())
    on = sdg_pipelines.tier_overrides(2, 2, 1, guided=True)
    guided = {(p, b) for p, blocks in on.items() for b, o in blocks.items() if "extra_body" in o}
    llm = {(p, b["name"]) for p in sdg_pipelines.LIBRARY_PIPELINES
           for b in sdg_pipelines.library_pipeline(p)[1]["blocks"] if b["type"] == "LLMBlock"}  # fmt: skip
    assert guided == llm - {("knowledge", "gen_spellcheck")}  # spellcheck's tags are empty: free text
    score = on["freeform_skills"]["evaluate_qa_pair"]["extra_body"]["guided_regex"]
    for digit in "0123":  # the filter keeps >= 2: every score stays writable, so the filter still filters
        assert re.fullmatch(
            score, f"[Start of Evaluation]\nok\n[End of Evaluation]\n[Start of Score]\n{digit}\n[End of Score]"
        )
    yes_no = on["knowledge"]["eval_faithfulness_qa_pair"]["extra_body"]["guided_regex"]
    assert all(re.search(v, yes_no) for v in ("YES", "NO"))


def test_derived_pipelines_record_the_guide_and_keep_every_block(tmp_path):
    from alignrepro.methods.lab import sdg_pipelines

    found = sdg_pipelines.write_pipelines(tmp_path, sdg_pipelines.tier_overrides(2, 2, 1, guided=True))
    block = next(b for b in found["freeform_skills"].blocks if b["name"] == "gen_responses")
    assert "guided_regex" in block["config"]["gen_kwargs"]["extra_body"]
    with pytest.raises(Exception, match="extra_body"):
        sdg_pipelines.derive("knowledge", sdg_pipelines.library_pipeline("knowledge")[1],
                             {"gen_knowledge": {"extra_body": {"logit_bias": {}}}})  # fmt: skip


def test_guided_mcqs_have_exactly_four_options_for_the_library():
    # eval_data._extract_options takes every `X) ` as an option: SmolLM2 wrote questions that began with "A) " or
    # held "B) …" inside, so every MCQ it wrote had five options and _post_process_mcq dropped all of them.
    import datasets

    from alignrepro.methods.lab import sdg_pipelines, sdg_shim

    regex = sdg_pipelines.tier_overrides(2, 2, 1, guided=True)["mmlu_bench"]["gen_mmlu_knowledge"]["extra_body"]
    fmt = "[Start of Question]\n{}\n[End of Question]\n[Start of Answer]\nB) b\n[End of Answer]"
    for five in ("A) The phoenix.\n\nA) a\nB) b\nC) c\nD) d", "B) A story about (B) fire\nA) a\nB) b\nC) c\nD) d"):
        assert not re.fullmatch(regex["guided_regex"], fmt.format(five))
    good = "What is it?\n\nA) a\nB) b\nC) c\nD) d"
    assert re.fullmatch(regex["guided_regex"], fmt.format(good))
    row = {"mmlubench_question": good, "mmlubench_answer": "B) b", "domain": "astronomy"}
    mcq = sdg_shim.sdg().eval_data._post_process_mcq(datasets.Dataset.from_list([row]))
    assert mcq["choices"] == [["a", "b", "c", "d"]] and mcq["question"] == ["What is it?"]
