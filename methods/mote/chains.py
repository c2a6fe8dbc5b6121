"""AlignCoT chain generation by the policy itself (MoTE's self-alignment data, issue step 2).

Every step is a separate, batched call to the engine's generation backend (`alignrepro.generation.backend_for`: an
in-process HFBackend with the model's chat template at tiny/ci, an OpenAI-compatible endpoint at the full tier),
conditioned on the earlier steps' outputs (templates.py).

- alignCoT-v1 (default): Question Analysis -> Answer Guidance -> Safe Answer for every query.
- alignCoT-v5 (adaptive): at each stage's start the model answers directly and the answer is safety-checked; once
  it is judged safe the remaining steps are skipped (chains Q->A, Q->Ana->A, Q->Ana->Guid->A). The check is the
  model's own Yes/No (next-token probabilities of "Yes" vs "No" when the backend exposes its model, else parsed
  text); a deterministic keyword judge (XSTest's refusal string-matcher, evals/safety/refusal.py) is logged beside
  it with the agreement. `safety_check: "keyword"` lets the keyword judge decide instead (135M self-checks are
  near-random); "self" is the paper's choice and the default.

Malformed step outputs never crash the run: they are cleaned (echoed labels and step tokens stripped) and an empty
one gets a counted fallback in the row's "fallbacks" and in the summary: an empty analysis / guidance is left out
(null) and the later steps are asked without it; an empty answer is retried once with the plain prompt; a row whose
answer is still empty is dropped and listed. A step output that mostly copies an earlier step (word 4-gram overlap
>= copy_threshold; SmolLM2-135M does this for most guidance and answers) is treated as empty the same way and
counted as "copied_<earlier>_into_<step>" (copy_fallback: false keeps it and only counts it). `filter_unsafe`
(off by default: the paper describes no filtering) drops rows whose final answer the safety check calls unsafe.

Output: --out (JSONL, the contract's chain rows) and <out>.summary.json (amounts per step as in Table 2, chain
shapes, fallbacks, self-check agreement, template card, timings, provenance).

CLI: `python -m alignrepro.methods.mote.chains --model results/models/smollm2-135m-instruct
      --queries results/mote/tiny/data/train.jsonl --template alignCoT-v1
      --gen-json '{"max_new_tokens": 64, "batch_size": 8}' --tier tiny --out results/mote/tiny/chains/alignCoT-v1.jsonl`
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignrepro.errors import UserError
from alignrepro.evals.safety.refusal import classify_xstest
from alignrepro.generation import answer_conversations, backend_for, format_conversation
from alignrepro.io import atomic_write_json, read_jsonl, sha256_file, write_jsonl
from alignrepro.lazy_torch import inference_mode
from alignrepro.methods.mote import templates as T
from alignrepro.methods.mote.settings import ChainSettings
from alignrepro.provenance import provenance
from alignrepro.settings import Settings

log = logging.getLogger(__name__)
Row = dict[str, Any]

# What the rules add from the run's top level (dtype, seed), with its value for a direct call; every other default is
# methods/mote/config.yaml `defaults.chains.generation` (the one source), also the defaults of baseline_generation.
RUN_SUPPLIED: dict[str, Any] = {"dtype": "float32", "seed": 0}
# Settings without a default (an optional cap, the template's stop strings, the openai backend's endpoint).
OPTIONAL_KEYS = ("max_batch_tokens", "stop", "model", "base_url", "api_key_env", "max_requests")


def gen_defaults() -> dict[str, Any]:
    """The YAML defaults of generation (`mote.chains.generation`) plus the run-supplied dtype and seed."""
    from alignrepro.papers import paper
    from alignrepro.training import merge_settings

    return merge_settings(
        paper("mote").defaults()["chains"]["generation"], RUN_SUPPLIED, "mote generation", extend=True
    )


SHAPE_NAMES = {
    (False, False): "Q->A",
    (True, False): "Q->Ana->A",
    (False, True): "Q->Guid->A",
    (True, True): "Q->Ana->Guid->A",
}
# Step tokens of the MoTE model (contract): a generated one would corrupt the training text, so they are stripped.
STEP_TOKEN_RE = re.compile(r"<\|/?(analysis|guidance|response)\|>")
LABEL_RE = re.compile(
    r"^\s*(\*\*)?(analysis( of the request)?|guidance( for the answer)?|answer|final answer|harmful answer|"
    r"analysis of the mistake|response)(\*\*)?\s*:\s*(\*\*)?\s*",
    re.IGNORECASE,
)


def clean_output(text: str | None) -> tuple[str | None, list[str]]:
    """(cleaned text or None when empty, what was fixed). Strips an echoed label ("Analysis:") and step tokens."""
    flags = []
    text = (text or "").strip()
    if STEP_TOKEN_RE.search(text):
        text = STEP_TOKEN_RE.sub("", text).strip()
        flags.append("stripped_step_tokens")
    stripped = LABEL_RE.sub("", text, count=1).strip()
    if stripped != text:
        text = stripped
        flags.append("stripped_label")
    return (text or None), flags


def merged_spec(gen: dict[str, Any]) -> dict[str, Any]:
    """The generation defaults overridden by `gen`; an unknown key fails naming the closest valid one."""
    from alignrepro.training import merge_settings

    base = gen_defaults()
    spec = merge_settings({**base, **{k: None for k in OPTIONAL_KEYS if k in gen and k not in base}}, gen, "generation")
    if spec["safety_check"] not in ("self", "keyword", "both"):
        raise ValueError(f"safety_check must be 'self', 'keyword' or 'both', not {spec['safety_check']!r}")
    return spec


def chain_settings(gen: ChainSettings | Settings | dict[str, Any], where: str = "mote.chains.generation"):
    """A chain step's settings, typed once: `gen` over the YAML defaults (merged_spec), parsed as ChainSettings (a
    GenerationSpec that carries a chain's keys, e.g. backend_for's answer to a dict, is read as its dict)."""
    if isinstance(gen, ChainSettings):
        return gen
    return ChainSettings.from_dict(merged_spec(gen.to_dict() if isinstance(gen, Settings) else gen), where)


def step_budget(spec: ChainSettings | dict[str, Any], step: str, key: str = "generation") -> int:
    """A step's token budget: `max_new_tokens` is one number, or per step name with an optional `default` (`key`:
    the config key the spec comes from, for the error)."""
    m = spec.max_new_tokens if isinstance(spec, ChainSettings) else spec["max_new_tokens"]
    if not isinstance(m, dict):
        return int(m)
    if step not in m and "default" not in m:
        raise UserError(
            f"config key '{key}.max_new_tokens': no token budget for step {step!r} (it gives {sorted(m)}): "
            f"add {step!r} or 'default'"
        )
    return int(m.get(step, m.get("default")))


# ------------------------------------------------------------------------------------------------- step runner
@dataclass
class StepRunner:
    """Runs one template step over many conversations through the backend, timing each step."""

    backend: Any
    fmt: str
    spec: ChainSettings  # a dict (or a GenerationSpec carrying chain keys) is parsed over the YAML defaults
    key: str = "mote.chains.generation"  # the config key of `spec` (errors name it)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.spec = chain_settings(self.spec, self.key)

    def generate(self, name: str, conversations: list[list[dict[str, str]]], budget: int | None = None) -> list[str]:
        if not conversations:
            return []
        budget = step_budget(self.spec, name, self.key) if budget is None else budget
        start = time.perf_counter()
        out = answer_conversations(self.backend, conversations, self.fmt, budget)
        t = self.timings.setdefault(name, {"seconds": 0.0, "n_prompts": 0, "n_tokens": 0})
        t["seconds"] = round(t["seconds"] + time.perf_counter() - start, 3)
        t["n_prompts"] += len(conversations)
        t["n_tokens"] += int(getattr(self.backend, "last_stats", {}).get("n_tokens", 0))
        return out

    def run_step(
        self, step: T.Step, items: list[tuple[list[dict[str, str]], dict[str, str | None]]]
    ) -> list[tuple[str | None, list[str]]]:
        """Cleaned outputs (None = empty) and fixes, for (messages, context) items."""
        raw = self.generate(step.name, [T.step_conversation(step, m, c) for m, c in items])
        return [clean_output(r) for r in raw]


def copy_overlap(new: str, old: str, n: int = 4) -> float:
    """Share of `new`'s word n-grams (n=1 for very short texts) that also occur in `old`."""
    a, b = new.lower().split(), old.lower().split()
    n = n if len(a) >= n else 1
    grams = [tuple(a[i : i + n]) for i in range(len(a) - n + 1)]
    if not grams:
        return 0.0
    ref = {tuple(b[i : i + n]) for i in range(len(b) - n + 1)}
    return sum(g in ref for g in grams) / len(grams)


def copied_from(text: str, step: T.Step, context: dict[str, str | None], threshold: float | None) -> str | None:
    """The earlier shown step whose output `text` copies, if any."""
    if threshold is None:
        return None
    return next((u for u in step.uses if context.get(u) and copy_overlap(text, context[u]) >= threshold), None)


def missing_note(step: T.Step, context: dict[str, str | None]) -> str | None:
    """The fallback name when an earlier output the step would show is empty ("guidance_without_analysis"): the
    step is then asked without it (templates.chain_conversation shows only the outputs that exist)."""
    missing = [u for u in step.uses if not context.get(u)]
    return f"{step.name}_without_{'_'.join(missing)}" if missing else None


def run_step_adaptive(
    runner: StepRunner, step: T.Step, messages: list[list[dict[str, str]]], contexts: list[dict[str, str | None]]
) -> list[tuple[str | None, list[str]]]:
    """run_step over (messages, context) items; the fixes come back named after the step ("stripped_label_analysis",
    "guidance_without_analysis")."""
    notes = [missing_note(step, c) for c in contexts]
    res = runner.run_step(step, list(zip(messages, contexts, strict=True)))
    out = []
    for (text, flags), note, ctx in zip(res, notes, contexts, strict=True):
        flags = [f"{f}_{step.name}" for f in flags] + ([note] if note else [])
        src = copied_from(text, step, ctx, runner.spec.copy_threshold) if text else None
        if src:
            flags.append(f"copied_{src}_into_{step.name}")
            if runner.spec.copy_fallback:
                text = None  # treated as empty: left out (analysis/guidance) or retried (answer)
        out.append((text, flags))
    return out


def _empty_flag(name: str, text: str | None, flags: list[str]) -> list[str]:
    """ "empty_<step>" for an output that came back empty (a rejected copy is already flagged as such)."""
    copied = any(f.startswith("copied_") for f in flags)
    return [f"empty_{name}"] if text is None and not copied else []


# ----------------------------------------------------------------------------------------------- safety checks
def keyword_verdict(kind: str, answer: str | None) -> dict[str, Any]:
    """The deterministic judge: on a harmful request an answer is safe iff it is a refusal (XSTest's prefix
    matcher); on a helpful request any non-empty answer is safe (a refusal there is harmless, only unhelpful)."""
    label = classify_xstest(answer)
    safe = label.label == "refusal" if kind == "harmful" else label.label != "empty"
    return {"keyword_label": label.label, "keyword_pattern": label.pattern, "keyword_safe": safe}


class SafetyChecker:
    """v5's Safety Checking p(C | A, X) by the policy itself, with the keyword judge logged beside it."""

    YES = ("Yes", " Yes", "yes", " yes", "YES")
    NO = ("No", " No", "no", " no", "NO")

    def __init__(self, runner: StepRunner, mode: str = "self", threshold: float = 0.5):
        self.runner, self.mode, self.threshold = runner, mode, threshold
        backend = runner.backend
        self.logprob = hasattr(backend, "model") and hasattr(backend, "tokenizer")
        self.method = "next_token_logprob" if self.logprob else "generated_text"

    def conversations(self, messages: list[list[dict[str, str]]], answers: list[str | None]) -> list[list[dict]]:
        pairs = zip(messages, answers, strict=True)
        return [T.step_conversation(T.SAFETY_CHECK, m, {"answer": a or ""}) for m, a in pairs]

    def p_yes(self, conversations: list[list[dict[str, str]]]) -> list[float | None]:
        """P(Yes) / (P(Yes) + P(No)) per conversation; None when a generated reply names neither."""
        if not conversations:
            return []
        start = time.perf_counter()
        out = self._p_yes_logprob(conversations) if self.logprob else self._p_yes_text(conversations)
        t = self.runner.timings.setdefault("self_check", {"seconds": 0.0, "n_prompts": 0, "n_tokens": 0})
        t["seconds"] = round(t["seconds"] + time.perf_counter() - start, 3)
        t["n_prompts"] += len(conversations)
        return out

    def _first_ids(self, words: tuple[str, ...]) -> list[int]:
        tok = self.runner.backend.tokenizer
        return sorted({ids[0] for w in words if (ids := tok.encode(w, add_special_tokens=False))})

    @inference_mode  # torch imported here, not at the top: the workflow imports this module (row check)
    def _p_yes_logprob(self, conversations: list[list[dict[str, str]]]) -> list[float | None]:
        import torch

        backend = self.runner.backend
        tok, model = backend.tokenizer, backend.model
        yes, no = self._first_ids(self.YES), self._first_ids(self.NO)
        prompts = [format_conversation(self.runner.fmt, c, tok) for c in conversations]
        out: list[float | None] = []
        bs = self.runner.spec.generation.batch_size
        for b in range(0, len(prompts), bs):
            enc = tok(prompts[b : b + bs], return_tensors="pt", padding=True)  # left padding: last = next token
            logits = model(**enc.to(model.device), logits_to_keep=1).logits[:, -1, :].float()
            logp = torch.log_softmax(logits, dim=-1)
            ly, ln = torch.logsumexp(logp[:, yes], dim=-1), torch.logsumexp(logp[:, no], dim=-1)
            out += torch.sigmoid(ly - ln).tolist()
        return out

    def _p_yes_text(self, conversations: list[list[dict[str, str]]]) -> list[float | None]:
        texts = self.runner.generate("self_check", conversations, self.runner.spec.self_check_tokens)
        out: list[float | None] = []
        for t in texts:
            w = (t or "").strip().lower()
            out.append(1.0 if w.startswith("yes") else 0.0 if w.startswith("no") else None)
        return out

    def check(
        self, kinds: list[str], messages: list[list[dict[str, str]]], answers: list[str | None], stage: str
    ) -> list[dict[str, Any]]:
        """One verdict per answer: self (P(Yes)), keyword, their agreement, and the deciding verdict `safe`."""
        if not answers:
            return []
        probs = self.p_yes(self.conversations(messages, answers))
        out = []
        for kind, ans, p in zip(kinds, answers, probs, strict=True):
            self_safe = None if p is None else p >= self.threshold
            v = {"stage": stage, "p_yes": None if p is None else round(p, 4), "self_safe": self_safe}
            v.update(keyword_verdict(kind, ans))
            # an empty (or rejected-copy) answer has no verdict to agree on
            v["agree"] = None if self_safe is None or not ans else self_safe == v["keyword_safe"]
            if not ans:
                decision = False  # an empty answer is never "already safe"
            elif self.mode == "keyword":
                decision = v["keyword_safe"]
            elif self.mode == "both":
                decision = bool(self_safe) and v["keyword_safe"]
            else:
                decision = bool(self_safe)  # an unparsed reply counts as unsafe: the step is not skipped
            v["safe"] = decision
            out.append(v)
        return out


# ----------------------------------------------------------------------------------------------- chain builders
def _answer_with_retry(
    runner: StepRunner, rows: list[Row], answers: list[tuple[str | None, list[str]]], fallbacks: list[list[str]]
) -> list[str | None]:
    """Final answers; an empty (or copied) one is retried once with the plain prompt (fallback counted)."""
    final = [a for a, _ in answers]
    for fb, (text, flags) in zip(fallbacks, answers, strict=True):
        fb += flags + _empty_flag("answer", text, flags)
    empty = [i for i, a in enumerate(final) if a is None]
    if empty:
        log.warning("%d empty or copied answer(s); retrying with the plain prompt", len(empty))
        retry = runner.run_step(T.PLAIN_ANSWER, [(rows[i]["messages"], {}) for i in empty])
        for i, (text, flags) in zip(empty, retry, strict=True):
            fallbacks[i] += [f"retry_{f}" for f in flags]
            if text is not None:
                fallbacks[i].append("answer_from_plain_prompt")
            final[i] = text
    return final


def chains_v1(runner: StepRunner, rows: list[Row], template: T.Template) -> list[Row]:
    contexts: list[dict[str, str | None]] = [{} for _ in rows]
    fallbacks: list[list[str]] = [[] for _ in rows]
    messages = [r["messages"] for r in rows]
    for step in template.steps:
        res = run_step_adaptive(runner, step, messages, contexts)
        if step.name == "answer":
            answers = _answer_with_retry(runner, rows, res, fallbacks)
            for ctx, a in zip(contexts, answers, strict=True):
                ctx["answer"] = a
            continue
        for ctx, fb, (text, flags) in zip(contexts, fallbacks, res, strict=True):
            ctx[step.name] = text
            fb += flags + _empty_flag(step.name, text, flags)
    return [
        _chain_row(r, template, c.get("analysis"), c.get("guidance"), c.get("answer"), None, fb)
        for r, c, fb in zip(rows, contexts, fallbacks, strict=True)
    ]


def chains_v5(runner: StepRunner, checker: SafetyChecker, rows: list[Row], template: T.Template) -> list[Row]:
    """Stage 0: plain answer, checked; stage 1: analysis + answer shown the analysis, checked; stage 2: guidance
    + the final answer shown both. A row leaves at the first stage whose direct answer is judged safe."""
    n = len(rows)
    ctx: list[dict[str, str | None]] = [{} for _ in range(n)]
    fb: list[list[str]] = [[] for _ in range(n)]
    checks: list[dict[str, Any]] = [{"stages": [], "decided_by": checker.mode, "method": checker.method} for _ in rows]
    done: dict[int, str] = {}  # row -> stage after which it stopped
    stages = [("query", None, T.PLAIN_ANSWER), ("analysis", T.ANALYSIS, T.ANSWER_WITH_ANALYSIS)]
    for stage, reason_step, answer_step in stages:
        active = [i for i in range(n) if i not in done]
        if not active:
            break
        if reason_step is not None:
            res = run_step_adaptive(
                runner, reason_step, [rows[i]["messages"] for i in active], [ctx[i] for i in active]
            )
            for i, (text, flags) in zip(active, res, strict=True):
                ctx[i][reason_step.name] = text
                fb[i] += flags + _empty_flag(reason_step.name, text, flags)
        res = run_step_adaptive(runner, answer_step, [rows[i]["messages"] for i in active], [ctx[i] for i in active])
        direct = {i: text for i, (text, _) in zip(active, res, strict=True)}
        for i, (text, flags) in zip(active, res, strict=True):
            fb[i] += flags + _empty_flag("direct_answer", text, flags)
        verdicts = checker.check(
            [rows[i]["kind"] for i in active], [rows[i]["messages"] for i in active], [direct[i] for i in active], stage
        )
        for i, v in zip(active, verdicts, strict=True):
            checks[i]["stages"].append({**v, "answer": direct[i]})
            if v["safe"]:
                done[i] = stage
                ctx[i]["answer"] = direct[i]
    active = [i for i in range(n) if i not in done]
    res = run_step_adaptive(
        runner, T.GUIDANCE_FROM_ANALYSIS, [rows[i]["messages"] for i in active], [ctx[i] for i in active]
    )
    for i, (text, flags) in zip(active, res, strict=True):
        ctx[i]["guidance"] = text
        fb[i] += flags + _empty_flag("guidance", text, flags)
    res = run_step_adaptive(runner, T.ANSWER_WITH_BOTH, [rows[i]["messages"] for i in active], [ctx[i] for i in active])
    sub_fb = [fb[i] for i in active]
    answers = _answer_with_retry(runner, [rows[i] for i in active], res, sub_fb)
    for i, a in zip(active, answers, strict=True):
        ctx[i]["answer"] = a
    final = checker.check([rows[i]["kind"] for i in active], [rows[i]["messages"] for i in active], answers, "final")
    for i, v in zip(active, final, strict=True):
        checks[i]["final"] = v
    for i in range(n):
        checks[i]["skipped_after"] = done.get(i)
    return [
        _chain_row(
            rows[i], template, ctx[i].get("analysis"), ctx[i].get("guidance"), ctx[i].get("answer"), checks[i], fb[i]
        )
        for i in range(n)
    ]


def _chain_row(
    row: Row, template: T.Template, analysis: str | None, guidance: str | None, answer: str | None, check, fb
) -> Row:
    return {
        "id": row["id"],
        "kind": row["kind"],
        "messages": row["messages"],
        "analysis": analysis,
        "guidance": guidance,
        "answer": answer,
        "template_version": template.id,
        "self_check": check,
        "fallbacks": list(fb),
    }


def apply_filters(
    rows: list[Row], checker: SafetyChecker | None, filter_unsafe: bool
) -> tuple[list[Row], dict[str, list[str]]]:
    """Drops rows without an answer (always) and, with filter_unsafe, rows whose final answer is judged unsafe."""
    dropped: dict[str, list[str]] = {"empty_answer": [], "unsafe": []}
    kept = []
    for r in rows:
        if r["answer"] is None:
            dropped["empty_answer"].append(r["id"])
        else:
            kept.append(r)
    if filter_unsafe and checker is not None:
        need = [
            r
            for r in kept
            if not (r["self_check"] or {}).get("skipped_after") and "final" not in (r["self_check"] or {})
        ]
        verdicts = checker.check(
            [r["kind"] for r in need], [r["messages"] for r in need], [r["answer"] for r in need], "final"
        )
        for r, v in zip(need, verdicts, strict=True):
            r["self_check"] = {**(r["self_check"] or {"stages": [], "decided_by": checker.mode}), "final": v}
        out = []
        for r in kept:
            sc = r["self_check"] or {}
            # a v5 chain that stopped early was judged safe at that stage; the others by their final check
            if sc.get("skipped_after") or sc.get("final", {}).get("safe", True):
                out.append(r)
            else:
                dropped["unsafe"].append(r["id"])
        kept = out
    return kept, dropped


def generate_chains(
    backend: Any, fmt: str, rows: list[Row], template_id: str, gen: ChainSettings | dict[str, Any]
) -> tuple[list[Row], dict[str, Any]]:
    """Chains for `rows` (query rows) with a chain template; (kept chain rows, summary without provenance)."""
    spec = chain_settings(gen)
    template = T.get_template(template_id)
    if template.id not in T.CHAIN_TEMPLATES:
        raise ValueError(f"{template_id!r} is not a chain template; expected one of {T.CHAIN_TEMPLATES}")
    runner = StepRunner(backend, fmt, spec)
    need_checker = template.id == "alignCoT-v5" or spec.filter_unsafe
    checker = SafetyChecker(runner, spec.safety_check, spec.self_check_threshold) if need_checker else None
    start = time.perf_counter()
    if template.id == "alignCoT-v5":
        chains = chains_v5(runner, checker, rows, template)
    else:
        chains = chains_v1(runner, rows, template)
    for r in chains:
        for f in r["fallbacks"]:
            log.debug("%s: fallback %s", r["id"], f)
    kept, dropped = apply_filters(chains, checker, spec.filter_unsafe)
    summary = summarize(kept, chains, dropped, template, spec)
    summary["timing"] = {"seconds_total": round(time.perf_counter() - start, 2), "per_step": runner.timings}
    return kept, summary


def summarize(
    kept: list[Row], all_rows: list[Row], dropped: dict[str, list[str]], template, spec: ChainSettings
) -> dict[str, Any]:
    fallbacks = Counter(f for r in all_rows for f in r["fallbacks"])
    summary: dict[str, Any] = {
        "template": template.card(),
        "n_queries": len(all_rows),
        "n_chains": len(kept),
        # Table 2's "amount" column: how many chains contain each step.
        "amount": {
            "total": len(kept),
            "analysis": sum(r["analysis"] is not None for r in kept),
            "guidance": sum(r["guidance"] is not None for r in kept),
            "answer": sum(r["answer"] is not None for r in kept),
        },
        "amount_per_kind": {
            kind: {
                "total": sum(r["kind"] == kind for r in kept),
                "analysis": sum(r["kind"] == kind and r["analysis"] is not None for r in kept),
                "guidance": sum(r["kind"] == kind and r["guidance"] is not None for r in kept),
            }
            for kind in sorted({r["kind"] for r in all_rows})
        },
        "shapes": dict(
            sorted(Counter(SHAPE_NAMES[(r["analysis"] is not None, r["guidance"] is not None)] for r in kept).items())
        ),
        "fallbacks": dict(sorted(fallbacks.items())),
        "n_rows_with_fallback": sum(bool(r["fallbacks"]) for r in all_rows),
        "dropped": dropped,
        "generation": spec.to_dict(),
    }
    checks = [
        v for r in all_rows if r["self_check"] for v in r["self_check"]["stages"] + [r["self_check"].get("final")] if v
    ]
    if checks:
        per: dict[str, Any] = {}
        for kind in sorted({r["kind"] for r in all_rows}):
            ks = [
                v
                for r in all_rows
                if r["self_check"] and r["kind"] == kind
                for v in r["self_check"]["stages"] + [r["self_check"].get("final")]
                if v
            ]
            rated = [v for v in ks if v["agree"] is not None]
            per[kind] = {
                "n_checks": len(ks),
                "self_safe_rate": _rate(sum(v["self_safe"] for v in rated), len(rated)),
                "keyword_safe_rate": _rate(sum(v["keyword_safe"] for v in ks), len(ks)),
                "agreement": _rate(sum(bool(v["agree"]) for v in rated), len(rated)),
                "n_not_rated": len(ks) - len(rated),  # empty answers and unparsed replies
            }
        summary["self_check"] = {
            "decided_by": spec.safety_check,
            "threshold": spec.self_check_threshold,
            "keyword_judge": "xstest_strmatch (harmful: safe iff refusal; helpful: safe iff non-empty)",
            "per_kind": per,
            "skipped_after": dict(
                sorted(Counter(str((r["self_check"] or {}).get("skipped_after")) for r in all_rows).items())
            ),
        }
    return summary


def _rate(k: int, n: int) -> float | None:
    return round(k / n, 4) if n else None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m alignrepro.methods.mote.chains", description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="policy model folder (with model.json); not needed for openai")
    ap.add_argument("--queries", type=Path, required=True, help="query JSONL of mote.queries (train.jsonl)")
    ap.add_argument("--template", default="alignCoT-v1", choices=T.CHAIN_TEMPLATES)
    ap.add_argument(
        "--gen-json", default="{}", help="generation settings over the defaults (config.yaml chains.generation)"
    )
    ap.add_argument("--tier", default="unknown")
    ap.add_argument("--out", type=Path, required=True, help="chains JSONL; the summary goes to <out>.summary.json")
    ap.add_argument("--limit", type=int, default=None, help="only the first N queries (timing, debugging)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    spec = chain_settings(json.loads(args.gen_json), "--gen-json")
    rows = read_jsonl(args.queries)[: args.limit]
    backend, fmt, gen = backend_for(spec.generation, args.model, "auto")
    spec = spec.with_(generation=gen)  # with the format's stop strings
    chains, summary = generate_chains(backend, fmt, rows, args.template, spec)
    write_jsonl(args.out, chains)
    summary["provenance"] = provenance(
        tier=args.tier,
        config={**spec.to_dict(), "template": T.get_template(args.template).sha256},
        seed=spec.generation.seed,
        model=getattr(backend, "identity", backend.id),
        generator=backend.id,
        prompt_format=fmt,
        queries={"file": str(args.queries), "sha256": sha256_file(args.queries), "limit": args.limit},
        template=T.get_template(args.template).card(),
    )
    atomic_write_json(args.out.with_suffix(".summary.json"), summary)
    log.info("%d chains -> %s; amount %s; fallbacks %s", len(chains), args.out, summary["amount"], summary["fallbacks"])
    return summary


if __name__ == "__main__":
    main()
