"""Verifiable task generators, answer extraction, the oracle critic, and the shipped open instructions."""

from __future__ import annotations

import pytest

from alignrepro.data.records import Record, is_positive_judgment
from alignrepro.data.shipped import load_open_instructions
from alignrepro.data.verifiable import KINDS, OracleCritic, extract_answer, generate_tasks, is_correct, oracle_critique


def _wrong(record: Record) -> str:
    """A plausible wrong answer in the same format as the gold."""
    gold, meta = record.reference, record.meta
    if meta["answer_type"] == "int":
        return str(int(gold) + 1)
    if meta["answer_type"] == "list":
        nums = gold.split(", ")
        return ", ".join([nums[1], nums[0], *nums[2:]])
    if meta.get("match") == "letter":
        return "z" if gold.lower() != "z" else "q"
    if meta.get("match") == "upper":
        return gold.lower()
    return gold + "x"


def test_generation_is_deterministic_per_seed_and_differs_across_seeds():
    a, b, c = generate_tasks(60, seed=1), generate_tasks(60, seed=1), generate_tasks(60, seed=2)
    assert [r.to_dict() for r in a] == [r.to_dict() for r in b]
    assert [r.instruction for r in a] != [r.instruction for r in c]
    # A longer run extends a shorter one instead of reshuffling it.
    assert [r.to_dict() for r in generate_tasks(20, seed=1)] == [r.to_dict() for r in a[:20]]


def test_records_are_well_formed():
    records = generate_tasks(300, seed=0)
    assert len({r.id for r in records}) == len(records)
    assert records[7].id == "v-0-00007"
    assert {r.task for r in records} == set(KINDS)
    for r in records:
        assert r.source == f"verifiable:{r.task}"
        assert r.meta["answer_type"] in {"int", "str", "list"}
        assert r.reference
        assert len(r.instruction.split()) <= 35


def test_kinds_filter_and_prefix():
    records = generate_tasks(10, seed=3, kinds=["sorting"], id_prefix="t")
    assert {r.task for r in records} == {"sorting"}
    assert records[0].id == "t-3-00000"
    with pytest.raises(ValueError, match="nope"):
        generate_tasks(1, seed=0, kinds=["nope"])


@pytest.mark.parametrize("kind", KINDS)
def test_gold_is_correct_and_perturbation_is_not(kind):
    for r in generate_tasks(40, seed=5, kinds=[kind]):
        for response in (r.reference, f"The answer is {r.reference}.", f"Sure! {r.reference}"):
            assert is_correct(r, response), (r.instruction, response)
        wrong = _wrong(r)
        assert not is_correct(r, wrong), (r.instruction, wrong)
        assert not is_correct(r, f"The answer is {wrong}."), (r.instruction, wrong)


def _rec(instruction: str, gold: str, **meta) -> Record:
    return Record(id="x-0", instruction=instruction, reference=gold, meta=meta)


ADD = _rec("Tom has 17 apples and buys 25 more. How many apples does he have now?", "42", answer_type="int")
SORT = _rec("Sort these numbers from smallest to largest: 9, 2, 5.", "2, 5, 9", answer_type="list", numbers=[9, 2, 5])
REVERSE = _rec("Reverse the letters of the word 'planet'.", "tenalp", answer_type="str", match="word", word="planet")
UPPER = _rec("Write the word 'garden' in uppercase letters.", "GARDEN", answer_type="str", match="upper", word="garden")
FIRST = _rec("What is the first letter of the word 'apple'?", "a", answer_type="str", match="letter", word="apple")
CAPITAL = _rec("What is the capital of India?", "New Delhi", answer_type="str", match="word")
SYMBOL = _rec("What is the chemical symbol for gold?", "Au", answer_type="str", match="word")
METERS = _rec("How many meters are in 7 kilometers?", "7000", answer_type="int")


@pytest.mark.parametrize(
    ("record", "response", "expected"),
    [
        (ADD, "The answer is 17 + 25 = 32.", "32"),
        (ADD, "Tom has 42 apples after buying 25 more.", "42"),  # operands copied from the question are skipped
        (ADD, "He has forty-two apples now.", "42"),
        (ADD, "**42**", "42"),
        (ADD, "The answer is: 1,042", "1042"),
        (ADD, "42.0", "42"),
        (ADD, "I don't know.", None),
        (METERS, "There are 7000 meters in 7 kilometers.", "7000"),
        (METERS, "7 km = 7,000 m", "7000"),
        (SORT, "Sure! The sorted list is [2, 5, 9].", "2, 5, 9"),
        (SORT, "2 < 5 < 9", "2, 5, 9"),
        (SORT, "The numbers 9, 2, 5 sorted are 2, 9, 5.", "2, 9, 5"),
        (SORT, "2, 5 and 9", "2, 5, 9"),
        (SORT, "1. 2\n2. 5\n3. 9", "2, 5, 9"),
        (SORT, "5", None),
        (REVERSE, "The word 'planet' reversed is 'tenalp'.", "tenalp"),
        (REVERSE, "Reversed, planet becomes tenlap.", "tenlap"),
        (REVERSE, "Sure! Here is the reversed word: tenalp", "tenalp"),
        (UPPER, "The word garden in uppercase is Garden.", "Garden"),
        (UPPER, "Sure! GARDEN", "GARDEN"),
        (FIRST, "The first letter of 'apple' is 'a'.", "a"),
        (FIRST, "I think it is p.", "p"),
        (CAPITAL, "New Delhi is the capital of India.", "New Delhi"),
        (CAPITAL, "The capital of India is Mumbai, a big city.", "Mumbai"),
        (CAPITAL, "I am not sure.", None),
        (SYMBOL, "Gold's symbol is Ag.", "Ag"),
    ],
)
def test_extraction_from_messy_responses(record, response, expected):
    assert extract_answer(record, response) == expected


def test_comparison_rules():
    assert is_correct(SYMBOL, "AU")  # case-insensitive for words and symbols
    assert is_correct(CAPITAL, "The capital of India is 'new delhi'.")
    assert not is_correct(UPPER, "garden")  # ... but not when the task is the casing itself
    assert is_correct(FIRST, "A")


def test_oracle_positive_is_exactly_perfect():
    critic = OracleCritic()
    judgment = critic.critique(ADD, "17 + 25 = 42, so Tom has 42 apples.")
    assert judgment == "Perfect."
    assert is_positive_judgment(judgment)


@pytest.mark.parametrize(
    ("record", "response", "wrong"),
    [
        (ADD, "The answer is 17 + 25 = 32.", "32"),
        (ADD, "The answer is: 1,042", "1,042"),
        (SORT, "Sure! The sorted list is [2, 9, 5].", "2, 9, 5"),
        (CAPITAL, "The capital of India is Mumbai.", "Mumbai"),
        (UPPER, "garden", "garden"),
        (FIRST, "The first letter is p.", "p"),
    ],
)
def test_oracle_names_wrong_span_and_right_value(record, response, wrong):
    judgment = oracle_critique(record, response)
    assert wrong in judgment and record.reference in judgment
    assert not is_positive_judgment(judgment)
    assert len(judgment.split()) <= 30
    assert judgment == oracle_critique(record, response)  # deterministic


def test_oracle_missing_answer_mentions_gold():
    for record, response in [(ADD, "I don't know."), (SORT, "Sorting is easy."), (CAPITAL, "I am not sure.")]:
        judgment = oracle_critique(record, response)
        assert record.reference in judgment
        assert not is_positive_judgment(judgment)


def test_oracle_on_generated_tasks_and_judge_metadata():
    critic = OracleCritic()
    assert critic.id == "oracle-critic-v1" and len(critic.prompt_hash) == 64
    for r in generate_tasks(60, seed=9):
        assert critic.critique(r, r.reference) == "Perfect."
        bad = critic.critique(r, _wrong(r))
        assert not is_positive_judgment(bad) and r.reference in bad
    judged = critic.judge(ADD, "32")
    assert judged.output == "32" and not judged.is_positive
    assert judged.meta["judge"] == critic.id and judged.meta["judge_prompt_hash"] == critic.prompt_hash
    assert ADD.judgment is None  # the input record is not mutated


def test_open_instructions_split():
    train, test, every = load_open_instructions("train"), load_open_instructions("test"), load_open_instructions()
    assert (len(train), len(test), len(every)) == (60, 20, 80)
    assert len({r.id for r in every}) == 80
    assert len({r.prompt_text.casefold() for r in every}) == 80
    assert all(r.task == "open" and r.source == "alignrepro-open-v1" for r in every)
    assert all(len(r.prompt_text.split()) <= 25 for r in every)
    with pytest.raises(ValueError):
        load_open_instructions("validation")
