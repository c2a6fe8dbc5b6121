"""MORLAIF's principles and the AI-feedback prompt (paper note §1.2, §1.4, §1.7, §7.12, §7.13).

- PRINCIPLES: the 12 principles of the final experiments, name -> the phrase inserted into the feedback prompt,
  verbatim from the official `principles/*.txt` (typos included: "langauge", "situtation", and sycophancy's phrase
  starting with "is", which doubles the "is" of the template, as the official prompt does).
- CAI_PRINCIPLES: Anthropic's 16 Constitutional-AI principles for the RL stage (Bai et al. 2022, arXiv 2212.08073,
  appendix C), the single-PM RLAIF baseline ("cai"); each pair gets one, drawn deterministically by `phrase_for`.
  Apostrophes are ASCII; the paper's typos ("overly-reactive of accusatory") are kept.
- HHH_PHRASE: the "single principle MORLAIF" baseline ("hhh"): our interpretation (note §7.12).
- ABLATION_ORDER: the order in which figure G's ablation drops principles (the first k are dropped).
- The feedback prompt: our own wording of the official template's structure (the official file is not copied),
  versioned by FEEDBACK_TEMPLATE_VERSION; `feedback_prompt` renders one comparison as the single user message.
  Variants (`template_for`): "clean" for the CAI sentences (note §7.13), and the "principle_last" layout (the
  principle only after the options), a speed option that lets a local model share the encoding across principles.
"""

from __future__ import annotations

import hashlib
import re

from alignrepro.io import sha256_text

PRINCIPLES: dict[str, str] = {
    "helpfulness": "the most helpful to the human",
    "ethicality": "the most ethical",
    "factuality": "the most factually accurate and best avoids common misconceptions",
    "toxicity": "the least toxic and which avoids, racist, sexist or otherwise offensive or harmful langauge",
    "sycophancy": "is the least sycophantic, that is it doesn't blindly agree with the human user",
    "empathy": "the most empathetic and understanding",
    "relevance": "the most relevant to what the human is asking",
    "context": "the most correctly considers the humans situtation and background",
    "bias": "the most unbiased, objective and impartial",
    "understandability": "the most easy to understand and clear",
    "detail": "provides enough detail to be helpful to the human",
    "conciseness": "the most concise and doesn't mention unnecessary details",
}

CAI_PRINCIPLES: list[str] = [
    "Please choose the response that is the most helpful, honest, and harmless.",
    "Please choose the assistant response that is as harmless and ethical as possible. Do NOT choose responses that "
    "are toxic, racist, or sexist, or that encourage or support illegal, violent, or unethical behavior. Above all "
    "the assistant's response should be wise, peaceful, and ethical.",
    "Compare the degree of harmfulness in the assistant responses and choose the one that's less harmful. However, "
    "try to avoid choosing responses that are too preachy, obnoxious, or overly-reactive.",
    "Choose the assistant response that is as harmless, helpful, polite, respectful, and thoughtful as possible "
    "without sounding overly-reactive of accusatory.",
    "Please choose the assistant response that's more ethical and moral. Do NOT choose responses that exhibit "
    "toxicity, racism, sexism or any other form of physical or social harm.",
    "Which of these assistant responses exhibits less harmful and more acceptable behavior? Choose the less harmful "
    "response.",
    "Choose the assistant response that answers the human's query in a more friendly, amiable, conscientious, and "
    "socially acceptable manner.",
    "Which of these assistant responses is less harmful? Choose the response that a wise, ethical, polite and "
    "friendly person would more likely say.",
    "Choose the response that is less harmful, paying close attention to whether each response encourages illegal, "
    "unethical or immoral activity.",
    "Please consider these assistant responses and choose the one that is less harmful, more age-appropriate, and "
    "more family-friendly.",
    "Choose the response that answers the human in the most thoughtful, respectful and cordial manner.",
    "Compare the assistant responses in terms of toxicity, racism, sexism and social bias, and choose the less "
    "harmful response.",
    "Choose the response that sounds most similar to what a peaceful, ethical, and wise person like Martin Luther "
    "King Jr. or Mahatma Gandhi might say.",
    "Which of the assistant responses is most harmless, helpful, and honest? Choose the best response based on these "
    "criteria.",
    "Choose the assistant response that is more harmless, polite, pleasant, and least likely to offend a "
    "socially-aware audience.",
    "Choose the assistant response that demonstrates more ethical and moral awareness without sounding excessively "
    "condescending, reactive, annoying or condemnatory.",
]

HHH_PHRASE = "the most helpful, honest and harmless"
BASELINES = ("cai", "hhh")
ALL_PRINCIPLES: tuple[str, ...] = (*PRINCIPLES, *BASELINES)

# Figure G: PM_regression.py refits on the last 12 - k principles of this list (ablating k drops the first k).
ABLATION_ORDER: list[str] = [
    "ethicality",
    "factuality",
    "relevance",
    "bias",
    "sycophancy",
    "understandability",
    "conciseness",
    "context",
    "helpfulness",
    "empathy",
    "detail",
    "toxicity",
]


def phrase_for(principle: str, pair_id: str, seed: int) -> str:
    """The phrase inserted for `principle` on pair `pair_id`: fixed for the 12 and "hhh"; for "cai" one of the 16
    CAI principles drawn from a hash of (seed, pair id), so it is the same in every run, process and order."""
    if principle in PRINCIPLES:
        return PRINCIPLES[principle]
    if principle == "hhh":
        return HHH_PHRASE
    if principle == "cai":
        digest = hashlib.sha256(f"{seed}/{pair_id}".encode()).digest()
        return CAI_PRINCIPLES[int.from_bytes(digest[:8], "big") % len(CAI_PRINCIPLES)]
    raise KeyError(f"unknown principle {principle!r}; expected one of {', '.join(ALL_PRINCIPLES)}")


# ---------------------------------------------------------------------------------------------- feedback prompt
FEEDBACK_TEMPLATE_VERSION = "v1"
# Same structure as the official prompt (note §1.2): task with the principle, the conversation, the two options, the
# principle again with "regardless of other perspectives", "A or B only", and an open "option:" for the answer.
FEEDBACK_TEMPLATE = (
    "You will see a conversation between a human and an AI assistant, followed by two possible next responses of "
    "the assistant. Your task is to judge which of the two responses is {principle}.\n\n"
    "Conversation:\n{conversation}\n\n"
    "Option A: {response_a}\n\n"
    "Option B: {response_b}\n\n"
    "Judge only which option is {principle}, regardless of how good the response is in other respects. "
    "Answer with a single letter, A or B.\n\n"
    "The best response is option:"
)
# note §7.13: full-sentence CAI principles read oddly after "is"; this variant states them as a rule to satisfy.
FEEDBACK_TEMPLATE_CLEAN = (
    "You will see a conversation between a human and an AI assistant, followed by two possible next responses of "
    "the assistant. Your task is to judge which of the two responses better satisfies this principle: "
    "{principle}\n\n"
    "Conversation:\n{conversation}\n\n"
    "Option A: {response_a}\n\n"
    "Option B: {response_b}\n\n"
    "Judge only which option better satisfies the principle above, regardless of how good the response is in other "
    "respects. Answer with a single letter, A or B.\n\n"
    "The best response is option:"
)
# Layout "principle_last" (a speed option, not the paper's): the task is stated without the principle and the
# principle comes once, after the two options, so everything before it -- the instructions, the conversation and the
# options -- is the same for every principle and a local model encodes it once per pair and order (shared KV cache).
_INTRO_NEUTRAL = (
    "You will see a conversation between a human and an AI assistant, followed by two possible next responses of "
    "the assistant. Your task is to judge which of the two responses is better in one specific respect, given "
    "after the options.\n\n"
    "Conversation:\n{conversation}\n\n"
    "Option A: {response_a}\n\n"
    "Option B: {response_b}\n\n"
)
FEEDBACK_TEMPLATE_LAST = _INTRO_NEUTRAL + (
    "Judge only which option is {principle}, regardless of how good the response is in other respects. "
    "Answer with a single letter, A or B.\n\n"
    "The best response is option:"
)
FEEDBACK_TEMPLATE_LAST_CLEAN = _INTRO_NEUTRAL + (
    "Judge only which option better satisfies this principle: {principle} Disregard how good the response is in "
    "other respects. Answer with a single letter, A or B.\n\n"
    "The best response is option:"
)
LAYOUTS = ("standard", "principle_last")
CAI_TEMPLATES = ("standard", "clean")
_TEMPLATES = {
    ("standard", "standard"): FEEDBACK_TEMPLATE,
    ("standard", "clean"): FEEDBACK_TEMPLATE_CLEAN,
    ("principle_last", "standard"): FEEDBACK_TEMPLATE_LAST,
    ("principle_last", "clean"): FEEDBACK_TEMPLATE_LAST_CLEAN,
}
LABELS = ("A", "B")
_FIELDS = ("principle", "conversation", "response_a", "response_b")


def template_for(principle: str, cai_template: str = "standard", layout: str = "standard") -> str:
    """The template for a principle: `layout` "standard" (the paper's structure: the principle in the task statement
    and again after the options) or "principle_last"; `cai_template` "clean" applies to the CAI baseline only (its
    phrases are whole sentences)."""
    if cai_template not in CAI_TEMPLATES:
        raise ValueError(f"cai_template must be one of {CAI_TEMPLATES}, not {cai_template!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"feedback layout must be one of {LAYOUTS}, not {layout!r}")
    return _TEMPLATES[(layout, cai_template if principle == "cai" else "standard")]


def template_hash(template: str) -> str:
    return sha256_text(f"{FEEDBACK_TEMPLATE_VERSION}\n{template}")


NAMES = {"user": "Human", "assistant": "Assistant"}
# A response that runs on into the next human turn ("...\n\nHuman: ...") or ends in a cut-off "\n\nHum".
_HUMAN_TURN = re.compile(r"\n\s*Human:")
_HUMAN_TAIL = re.compile(r"(?:\n\s*|^)H(?:u(?:m(?:a(?:n:?)?)?)?)?\s*$")


def strip_human_fragments(response: str) -> str:
    """Drop a trailing human turn the responder started (the official code strips trailing "Human:" fragments):
    everything from a "\\nHuman:" on, then a cut-off "Human:" prefix on its own last line."""
    text = response
    m = _HUMAN_TURN.search(text)
    if m:
        text = text[: m.start()]
    text = text.rstrip()
    if text.endswith("Human:"):
        text = text[: -len("Human:")]
    return _HUMAN_TAIL.sub("", text).strip()


def render_conversation(messages: list[dict[str, str]]) -> str:
    """The conversation in HH-RLHF's form: "Human: ...\\n\\nAssistant: ..." (one block per message)."""
    return "\n\n".join(f"{NAMES[m['role']]}: {m['content'].strip()}" for m in messages)


def fill(template: str, values: dict[str, str]) -> str:
    """One pass over the placeholders, so a "{response_b}" written inside a response is never substituted."""
    pattern = re.compile("|".join(re.escape("{" + k + "}") for k in _FIELDS))
    return pattern.sub(lambda m: values[m.group(0)[1:-1]], template)


def feedback_prompt(
    template: str,
    phrase: str,
    conversation: str | list[dict[str, str]],
    first: str,
    second: str,
    *,
    strip: bool = True,
) -> str:
    """The user message asking which of `first` (option A) and `second` (option B) is `phrase`; `conversation` is
    the messages before the responses, or their rendering."""
    if strip:
        first, second = strip_human_fragments(first), strip_human_fragments(second)
    if not isinstance(conversation, str):
        conversation = render_conversation(conversation)
    values = {
        "principle": phrase,
        "conversation": conversation,
        "response_a": first,
        "response_b": second,
    }
    return fill(template, values)
