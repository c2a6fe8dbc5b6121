"""Seeded generators of small, programmatically checkable tasks (the tiny tier's data for CUT's online setting).

Each kind is one function `(rng) -> (instruction, gold, meta)`. Item i of a run draws from its own RNG seeded by
(seed, i), so `generate_tasks(n, s)` is a prefix of `generate_tasks(m, s)` for n < m: the pool is unlimited and a
larger run never reshuffles a smaller one. Instructions stay short because the tiny tier trains a 135M model on CPU.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from alignrepro.data.records import Record

Task = tuple[str, str, dict]  # (instruction, gold answer, meta)

NAMES = ["Tom", "Anna", "Ben", "Maria", "Sam", "Lily", "Omar", "Mei", "Jack", "Nora"]
ITEMS = ["apples", "pencils", "marbles", "stickers", "cookies", "books", "coins", "cards", "shells", "balloons"]
# (big unit, small unit, factor): integer answers both ways.
UNITS = [
    ("kilometers", "meters", 1000),
    ("kilograms", "grams", 1000),
    ("liters", "milliliters", 1000),
    ("meters", "centimeters", 100),
    ("hours", "minutes", 60),
    ("minutes", "seconds", 60),
    ("days", "hours", 24),
    ("weeks", "days", 7),
    ("feet", "inches", 12),
    ("years", "months", 12),
]
# No palindromes, so reversing always changes the word.
WORDS = [
    "planet", "garden", "window", "rabbit", "orange", "pencil", "candle", "forest", "silver", "bridge",
    "market", "spider", "yellow", "doctor", "button", "castle", "jacket", "monkey", "rocket", "summer",
    "tiger", "cloud", "river", "stone", "music", "light", "dream", "chair", "paper", "horse",
]  # fmt: skip
# Words with repeated letters make letter counting non-trivial.
COUNT_WORDS = [
    "banana", "strawberry", "balloon", "committee", "bookkeeper", "coffee", "pepper", "success", "address",
    "cheese", "grammar", "letter", "mississippi", "tomorrow", "butterfly", "elephant", "programming", "necessary",
]  # fmt: skip
SUBJECTS = ["the cat", "my little brother", "a tall man", "the old dog", "our teacher", "the young girl", "she"]
PREDICATES = ["sleeps", "reads a book", "walks to the park", "sings", "eats lunch", "plays the piano", "runs fast"]
TAILS = ["", " every morning", " in the garden", " after school", " with a friend", " on rainy days"]
CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Portugal": "Lisbon",
    "Japan": "Tokyo", "China": "Beijing", "India": "New Delhi", "Egypt": "Cairo", "Kenya": "Nairobi",
    "Canada": "Ottawa", "Brazil": "Brasilia", "Argentina": "Buenos Aires", "Peru": "Lima", "Nepal": "Kathmandu",
    "Australia": "Canberra", "Russia": "Moscow", "Norway": "Oslo", "Sweden": "Stockholm", "Finland": "Helsinki",
    "Greece": "Athens", "Turkey": "Ankara", "Poland": "Warsaw", "Austria": "Vienna", "Ireland": "Dublin",
    "Thailand": "Bangkok", "Vietnam": "Hanoi", "Chile": "Santiago", "Cuba": "Havana", "Morocco": "Rabat",
}  # fmt: skip
SYMBOLS = {
    "hydrogen": "H", "helium": "He", "carbon": "C", "nitrogen": "N", "oxygen": "O", "sodium": "Na",
    "magnesium": "Mg", "aluminium": "Al", "silicon": "Si", "sulfur": "S", "chlorine": "Cl", "potassium": "K",
    "calcium": "Ca", "iron": "Fe", "copper": "Cu", "zinc": "Zn", "silver": "Ag", "tin": "Sn", "gold": "Au",
    "lead": "Pb",
}  # fmt: skip
# A format hint on some items only, so the model also sees bare questions.
HINTS = {"int": ["Give the final answer.", "Answer with just the number.", ""], "str": ["Give the final answer.", ""]}


def _hint(rng: random.Random, answer_type: str) -> str:
    return rng.choice(HINTS.get(answer_type, HINTS["str"]))


def arithmetic(rng: random.Random) -> Task:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    op = rng.choice(["add", "sub", "mul", "div", "two_step"])
    if op == "add":
        a, b = rng.randint(2, 60), rng.randint(2, 40)
        text, gold = f"{name} has {a} {item} and buys {b} more. How many {item} does {name} have now?", a + b
    elif op == "sub":
        a = rng.randint(10, 80)
        b = rng.randint(1, a - 1)
        text, gold = f"{name} has {a} {item} and gives {b} to a friend. How many {item} are left?", a - b
    elif op == "mul":
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        text, gold = f"{name} buys {a} boxes with {b} {item} in each box. How many {item} is that in total?", a * b
    elif op == "div":
        q, k = rng.randint(2, 12), rng.randint(2, 9)
        text, gold = f"{name} shares {q * k} {item} equally among {k} friends. How many {item} does each get?", q
    else:
        a, b = rng.randint(5, 40), rng.randint(2, 30)
        c = rng.randint(1, a + b - 1)
        text = f"{name} has {a} {item}, buys {b} more, then gives away {c}. How many {item} are left?"
        gold = a + b - c
    return text, str(gold), {"answer_type": "int", "op": op}


def unit_conversion(rng: random.Random) -> Task:
    big, small, factor = rng.choice(UNITS)
    v = rng.randint(2, 12)
    if rng.random() < 0.5:
        return f"How many {small} are in {v} {big}?", str(v * factor), {"answer_type": "int", "op": f"{big}->{small}"}
    return f"Convert {v * factor} {small} to {big}.", str(v), {"answer_type": "int", "op": f"{small}->{big}"}


def counting(rng: random.Random) -> Task:
    if rng.random() < 0.5:
        word = rng.choice(COUNT_WORDS)
        letter = rng.choice(sorted(set(word)))
        text = f"How many times does the letter '{letter}' appear in the word '{word}'?"
        return text, str(word.count(letter)), {"answer_type": "int", "op": "letters"}
    sentence = f"{rng.choice(SUBJECTS)} {rng.choice(PREDICATES)}{rng.choice(TAILS)}."
    sentence = sentence[0].upper() + sentence[1:]
    return (
        f"How many words are in the sentence '{sentence}'?",
        str(len(sentence.split())),
        {"answer_type": "int", "op": "words"},
    )


def string_edit(rng: random.Random) -> Task:
    word, op = rng.choice(WORDS), rng.choice(["reverse", "upper", "first", "last"])
    meta = {"answer_type": "str", "op": op, "word": word, "match": "word"}
    if op == "reverse":
        return f"Reverse the letters of the word '{word}'.", word[::-1], meta
    if op == "upper":
        return f"Write the word '{word}' in uppercase letters.", word.upper(), {**meta, "match": "upper"}
    position, gold = ("first", word[0]) if op == "first" else ("last", word[-1])
    return f"What is the {position} letter of the word '{word}'?", gold, {**meta, "match": "letter"}


def sorting(rng: random.Random) -> Task:
    nums = rng.sample(range(1, 50), rng.randint(3, 5))
    while nums == sorted(nums):  # an already-sorted input would make "repeat the input" a correct answer
        rng.shuffle(nums)
    text = f"Sort these numbers from smallest to largest: {', '.join(map(str, nums))}."
    return text, ", ".join(map(str, sorted(nums))), {"answer_type": "list", "numbers": nums}


def lookup(rng: random.Random) -> Task:
    if rng.random() < 0.6:
        country = rng.choice(sorted(CAPITALS))
        return (
            f"What is the capital of {country}?",
            CAPITALS[country],
            {"answer_type": "str", "op": "capital", "match": "word"},
        )
    element = rng.choice(sorted(SYMBOLS))
    text = f"What is the chemical symbol for {element}?"
    return text, SYMBOLS[element], {"answer_type": "str", "op": "symbol", "match": "word"}


GENERATORS: dict[str, Callable[[random.Random], Task]] = {
    "arithmetic": arithmetic,
    "unit_conversion": unit_conversion,
    "counting": counting,
    "string_edit": string_edit,
    "sorting": sorting,
    "lookup": lookup,
}
KINDS: list[str] = list(GENERATORS)


def generate_tasks(n: int, seed: int, kinds: list[str] | None = None, id_prefix: str = "v") -> list[Record]:
    """`n` tasks cycling through `kinds` (default: all) in order; deterministic for (n, seed, kinds)."""
    kinds = list(kinds) if kinds is not None else KINDS
    unknown = [k for k in kinds if k not in GENERATORS]
    if unknown or not kinds:
        raise ValueError(f"unknown or empty task kinds {unknown or kinds}; choose from {KINDS}")
    records = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        rng = random.Random(f"{seed}:{i}:{kind}")  # str seeds hash via sha512: stable across runs and platforms
        text, gold, meta = GENERATORS[kind](rng)
        hint = _hint(rng, meta["answer_type"])
        instruction = f"{text} {hint}" if hint else text
        records.append(
            Record(
                id=f"{id_prefix}-{seed}-{i:05d}",
                instruction=instruction,
                reference=gold,
                task=kind,
                source=f"verifiable:{kind}",
                meta=meta,
            )
        )
    return records
