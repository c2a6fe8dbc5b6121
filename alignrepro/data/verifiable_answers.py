"""Answer extraction from free text, and the correctness check, for the verifiable tasks.

A 135M model rarely answers with the bare value ("The answer is 17 + 25 = 32."), so extraction is heuristic:
  - int: the last number in the sentence after an "answer/total/result" marker (else the whole response),
    preferring numbers that are not operands copied from the question; number words ("three") as a fallback;
  - list: the last run of 2+ numbers (comma/and/space separated), preferring one that is not the question's list;
  - str: an "answer is/:" marker, then the last quoted or bold token not copied from the question, then the first
    new (non-filler) word; single letters and uppercase words have their own rules (`meta["match"]`).
`find_answer` also keeps the span exactly as written, so the oracle critic can quote it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from alignrepro.data.records import Record

_NUM = re.compile(r"(?<![\w.])-?\d{1,3}(?:,\d{3})+(?!\d)|(?<![\w.])-?\d+(?:\.\d+)?")
_UNITS = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
]  # fmt: skip
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_WORD_NUM = re.compile(
    rf"\b(?:({'|'.join(_TENS)})(?:[- ]({'|'.join(_UNITS[1:10])}))?|({'|'.join(_UNITS)}))\b", re.IGNORECASE
)
_MARKER = re.compile(r"\b(?:final answer|answer|result|total)\b\s*(?:is|=|:|would be|will be)?", re.IGNORECASE)
_STR_MARKER = re.compile(r"\banswer\s*(?:is|:)\s*:?", re.IGNORECASE)
_SENTENCE_END = re.compile(r"\.(?=\s|$)|[\n!?]")
_RUN = re.compile(r"(?<![\w.])-?\d+(?:(?:[ \t]*[,;<][ \t]*(?:and[ \t]+)?|[ \t]+and[ \t]+|[ \t]+)-?\d+(?!\.\d))+")
_ITEM_LINE = re.compile(r"^[ \t]*(?:\d+[.)]|[-*•])[ \t]*(-?\d+)[ \t]*[.,]?[ \t]*$", re.MULTILINE)  # "1. 2" / "- 2"
_TOKEN = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")
_QUOTED = re.compile(r"(?<![^\W\d_])(?:\*\*|['\"`‘“])([^'\"`‘’“”*\n]{1,40}?)(?:\*\*|['\"`’”])(?![^\W\d_])")
# Filler and task words a response wraps its answer in; never taken as the answer itself.
_FILLER = frozenset([
    "sure", "here", "the", "a", "an", "is", "are", "was", "it", "it's", "its", "that", "this", "of", "in",
    "for", "to", "and", "or", "so", "thus", "therefore", "yes", "okay", "ok", "i", "i'm", "believe", "think",
    "would", "be", "answer", "final", "correct", "word", "words", "letter", "letters", "reversed", "reverse",
    "reversing", "backwards", "spelled", "spelling", "uppercase", "upper", "case", "capital",
    "chemical", "symbol", "element", "becomes", "written", "as", "when", "you", "get", "gives", "result",
    "course", "well", "let's", "see", "my", "name", "called", "known", "am", "not", "don't", "know", "cannot",
    "can't", "unsure", "sorry", "hello", "hi", "great", "question", "please", "thank", "thanks", "hope",
    "helps", "there", "which", "what", "who", "how", "also", "very", "indeed", "actually", "really", "just",
    "only", "has", "have", "had", "will", "can", "could", "should", "may", "might", "must", "do", "does", "did",
    "with", "from", "by", "on", "at", "but", "if", "because",
])  # fmt: skip


@dataclass(frozen=True)
class Extracted:
    value: str  # canonical form, compared with the gold
    raw: str  # the span exactly as written in the response (what a critique quotes)


def _canon_number(text: str) -> str:
    text = text.replace(",", "")
    if "." in text:
        f = float(text)
        return str(int(f)) if f.is_integer() else str(f)
    return str(int(text))


def _word_number(m: re.Match) -> str:
    if m.group(3):
        return str(_UNITS.index(m.group(3).lower()))
    return str(_TENS[m.group(1).lower()] + (_UNITS.index(m.group(2).lower()) if m.group(2) else 0))


def _answer_segment(response: str) -> str:
    """The sentence after the last answer marker, or the whole response when there is none."""
    markers = list(_MARKER.finditer(response))
    if not markers:
        return response
    rest = response[markers[-1].end() :]
    end = _SENTENCE_END.search(rest)
    return rest[: end.start()] if end else rest


def _int_answer(record: Record, response: str) -> Extracted | None:
    operands = {_canon_number(m.group()) for m in _NUM.finditer(record.prompt_text)}
    for text in (_answer_segment(response), response):
        found = [Extracted(_canon_number(m.group()), m.group()) for m in _NUM.finditer(text)]
        if not found:
            found = [Extracted(_word_number(m), m.group()) for m in _WORD_NUM.finditer(text)]
        if found:
            fresh = [e for e in found if e.value not in operands]
            return (fresh or found)[-1]
    return None


def _list_answer(record: Record, response: str) -> Extracted | None:
    question = [int(x) for x in record.meta.get("numbers", [])]
    runs = []
    for m in _RUN.finditer(response):
        nums = [int(x) for x in re.findall(r"-?\d+", m.group())]
        runs.append((nums, Extracted(", ".join(map(str, nums)), m.group())))
    items = _ITEM_LINE.findall(response)
    if not runs and len(items) >= 2:  # one number per line, as a numbered or bulleted list
        runs.append(([int(x) for x in items], Extracted(", ".join(items), ", ".join(items))))
    fresh = [e for nums, e in runs if nums != question]
    return (fresh or [e for _, e in runs] or [None])[-1]


def _tokens(text: str) -> list[re.Match]:
    return list(_TOKEN.finditer(text))


def _words_from(response: str, toks: list[re.Match], i: int, n: int) -> Extracted:
    """`n` adjacent tokens starting at toks[i] (a multi-word gold such as "New Delhi" needs more than one)."""
    j = i
    while j + 1 < min(len(toks), i + n) and response[toks[j].end() : toks[j + 1].start()] == " ":
        j += 1
    raw = response[toks[i].start() : toks[j].end()]
    return Extracted(raw, raw)


def _letter_answer(response: str) -> Extracted | None:
    quoted = [m.group(1).strip() for m in _QUOTED.finditer(response)]
    letters = [q for q in quoted if len(q) == 1 and q.isalpha()]
    if letters:
        return Extracted(letters[-1], letters[-1])
    # "a"/"I" followed by a word are an article or a pronoun ("I think", "a word"), not an answer.
    singles = [
        m.group()
        for m in _TOKEN.finditer(response)
        if len(m.group()) == 1 and not (m.group() in "aAI" and re.match(r"\s+[^\W\d_]", response[m.end() :]))
    ]
    return Extracted(singles[-1], singles[-1]) if singles else None


def _str_answer(record: Record, response: str) -> Extracted | None:
    match, gold = record.meta.get("match", "word"), record.reference or ""
    if match == "letter":
        return _letter_answer(response)
    toks = _tokens(response)
    if match == "upper":  # any casing of the source word is the model's attempt at the uppercase form
        word = record.meta.get("word", "")
        same = [m.group() for m in toks if m.group().casefold() == word.casefold()]
        recased = [t for t in same if t != word]
        if same:
            return Extracted((recased or same)[-1], (recased or same)[-1])
    question = {m.group().casefold() for m in _tokens(record.prompt_text)}
    question |= {w + "'s" for w in question}  # "Gold's symbol is Ag" copies "gold" from the question
    n_words = max(1, len(gold.split()))
    markers = list(_STR_MARKER.finditer(response))
    if markers:
        after = [i for i, m in enumerate(toks) if m.start() >= markers[-1].end()]
        if after:
            return _words_from(response, toks, after[0], n_words)
    quoted = [m.group(1).strip() for m in _QUOTED.finditer(response)]
    quoted = [q for q in quoted if q and q.casefold() not in question and q.casefold() not in _FILLER]
    if quoted:
        return Extracted(quoted[-1], quoted[-1])
    capitalized = gold[:1].isupper()  # names and symbols: skip lowercase chatter around them
    for i, m in enumerate(toks):
        word = m.group()
        if (
            word.casefold() not in question
            and word.casefold() not in _FILLER
            and (word[0].isupper() or not capitalized)
        ):
            return _words_from(response, toks, i, n_words)
    return None


def find_answer(record: Record, response: str) -> Extracted | None:
    """The response's final answer (canonical value + raw span), or None when nothing answer-like is present."""
    answer_type = record.meta.get("answer_type", "str")
    if answer_type == "int":
        return _int_answer(record, response)
    if answer_type == "list":
        return _list_answer(record, response)
    return _str_answer(record, response)


def extract_answer(record: Record, response: str) -> str | None:
    found = find_answer(record, response)
    return found.value if found else None


def same_answer(record: Record, value: str) -> bool:
    """Compare a canonical extracted value with the record's gold."""
    gold = record.reference or ""
    if record.meta.get("match") == "upper":
        return value.strip() == gold.strip()
    if record.meta.get("answer_type") == "int":
        try:
            return _canon_number(value) == _canon_number(gold)
        except ValueError:
            return False
    return " ".join(value.split()).casefold() == " ".join(gold.split()).casefold()


def is_correct(record: Record, response: str) -> bool:
    value = extract_answer(record, response)
    return value is not None and same_answer(record, value)
