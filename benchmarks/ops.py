"""Per-operation benchmarks on one model: the project's batched generate against raw HF `model.generate` with the
same longest-first batches, and the local judge (shared-prefix KV cache) against a raw forward of each full prompt.
Both sides share one loaded model, so only the code paths differ."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from benchmarks.stats import interleaved, rate_table, ratio, time_ratio

INSTRUCTIONS = [
    "Give three tips for staying healthy.",
    "What is the capital of France?",
    "Explain why the sky is blue in two sentences.",
    "Write a haiku about autumn leaves.",
    "Translate 'good morning' into Spanish and German.",
    "List the first five prime numbers.",
    "Summarize the plot of Romeo and Juliet in one paragraph for a ten-year-old reader who has never read it.",
    "What is 17 multiplied by 23?",
    "Describe how a refrigerator keeps food cold.",
    "Suggest a name for a small coffee shop near a university campus that serves mostly students.",
    "Why do we have seasons on Earth?",
    "Write a short thank-you note to a colleague who helped you finish a report on time.",
    "Convert 100 degrees Fahrenheit to Celsius and show the formula.",
    "What are the main differences between a list and a tuple in Python?",
    "Give an example of a metaphor.",
    "Explain what a neural network is to someone who has never programmed, using an analogy from everyday life.",
]


def prompts(n: int) -> list[str]:
    """n Alpaca-format prompts of varied lengths (the CUT template the workflow generates with)."""
    from alignrepro.templates import alpaca_prompt

    base = [alpaca_prompt(x) for x in INSTRUCTIONS]
    return [
        base[i % len(base)] if i < len(base) else alpaca_prompt(f"{INSTRUCTIONS[i % 16]} (case {i})") for i in range(n)
    ]


def bench_generation(model_dir: Path, n_prompts: int, max_new_tokens: int, batch_size: int, repeats: int) -> dict:
    """tokens/s of HFBackend.generate vs raw `model.generate` over the same length_batches; identical outputs."""
    import torch

    from alignrepro.generation import TEMPLATE_STOPS, HFBackend, cut_at_stop, length_batches

    stops = TEMPLATE_STOPS["alpaca"]
    backend = HFBackend(model_dir, dtype=torch.float32, batch_size=batch_size, stop=stops)
    tok, model = backend.tokenizer, backend.model
    texts = prompts(n_prompts)

    def project() -> tuple[float, Any]:
        out = backend.generate(texts, max_new_tokens)
        return backend.last_stats["n_tokens"], out

    @torch.inference_mode()
    def raw() -> tuple[float, Any]:
        lengths = [len(ids) for ids in tok(texts)["input_ids"]]
        outs, n_tokens = {}, 0
        for idx in length_batches(lengths, batch_size):
            enc = tok([texts[i] for i in idx], return_tensors="pt", padding=True)
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
            for i, row in zip(idx, gen[:, enc["input_ids"].shape[1] :], strict=True):
                n_tokens += int((row != tok.pad_token_id).sum())
                outs[i] = cut_at_stop(tok.decode(row, skip_special_tokens=True), stops)  # the same cut, after
        return n_tokens, [outs[i] for i in range(len(texts))]

    series = interleaved({"project": project, "raw_hf": raw}, repeats)
    same = sum(
        a == b for a, b in zip(series["project"].samples[0].output, series["raw_hf"].samples[0].output, strict=True)
    )
    return {
        "settings": {"prompts": n_prompts, "max_new_tokens": max_new_tokens, "batch_size": batch_size},
        "unit": "tokens",
        "variants": rate_table(series, "tokens"),
        # Same prompts and token budget; the project stops a batch once every row hit a stop string and counts
        # tokens up to it, so tokens/s and time for the same work are both given.
        "ratio_project_vs_raw": ratio(series["project"], series["raw_hf"]),
        "ratio_project_vs_raw_cpu": ratio(series["project"], series["raw_hf"], "cpu_s"),
        "time_ratio_raw_over_project": time_ratio(series["project"], series["raw_hf"]),
        "time_ratio_raw_over_project_cpu": time_ratio(series["project"], series["raw_hf"], "cpu_s"),
        "identical_outputs": f"{same}/{n_prompts}",
        "outputs": series["project"].samples[0].output,
    }


def bench_judge(model_dir: Path, outputs: list[str], batch_size: int, repeats: int) -> dict:
    """Seconds per judgment: LocalLogprobJudge (shared prefix cached once per call, logits_to_keep=1) vs a raw
    forward of each full prompt (same left-padded batches, last position's logits); the same preferences."""
    import torch

    from alignrepro.judges.base import PairItem
    from alignrepro.judges.local import LocalLogprobJudge

    judge = LocalLogprobJudge(model_dir, batch_size=batch_size)
    n = len(outputs)
    items = [PairItem(INSTRUCTIONS[i % 16], outputs[i], outputs[(i + 1) % n]) for i in range(n)]

    def project() -> tuple[float, Any]:
        judgments = judge._score(items)  # values and answer-token masses (a value is NaN below the mass threshold)
        return n, [(j.value, j.answer_mass) for j in judgments]

    @torch.inference_mode()
    def raw() -> tuple[float, Any]:
        seqs = [_prompt_ids(judge, it) for it in items]
        order = sorted(range(n), key=lambda i: -len(seqs[i]))
        prefs = [0.0] * n
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            width = max(len(seqs[i]) for i in idx)
            ids = torch.tensor([[judge.pad_id] * (width - len(seqs[i])) + seqs[i] for i in idx])
            mask = torch.tensor([[0] * (width - len(seqs[i])) + [1] * len(seqs[i]) for i in idx])
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = judge.model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -1, :]
            probs = torch.softmax(logits.float(), dim=-1)[:, judge.label_ids]
            values = (1.0 + probs[:, 1] / probs.sum(-1).clamp_min(1e-30)).tolist()
            for i, v, m in zip(idx, values, probs.sum(-1).tolist(), strict=True):
                prefs[i] = (v, m)
        return n, prefs

    series = interleaved({"project": project, "raw_forward": raw}, repeats)
    a, b = series["project"].samples[0].output, series["raw_forward"].samples[0].output
    # Values are compared where the judge kept them (finite); the answer-token masses of every judgment.
    diffs = [abs(x[0] - y[0]) for x, y in zip(a, b, strict=True) if math.isfinite(x[0])]
    diffs += [abs(x[1] - y[1]) for x, y in zip(a, b, strict=True)]
    per = {k: [x.wall_s / n for x in s.samples] for k, s in series.items()}
    return {
        "settings": {"judgments": n, "batch_size": batch_size, "judge": judge.id},
        "unit": "judgments",
        "variants": rate_table(series, "judgments"),
        "s_per_judgment_median": {k: sorted(v)[len(v) // 2] for k, v in per.items()},
        "ratio_project_vs_raw": ratio(series["project"], series["raw_forward"]),
        "ratio_project_vs_raw_cpu": ratio(series["project"], series["raw_forward"], "cpu_s"),
        "max_abs_diff_values_and_masses": max(diffs),
        "n_unparsable": sum(not math.isfinite(x[0]) for x in a),
    }


def _prompt_ids(judge: Any, item: Any) -> list[int]:
    """The judge's own token ids for a pairwise prompt (its truncation included)."""
    if hasattr(judge, "_encode"):
        return list(judge._encode(item, False)[0])
    return list(judge.encode(item))
