"""Self-BLEU of the generated chains (Table 2): the total chain, and its analysis, guidance and answer steps.

Self-BLEU as in Texygen (Zhu et al. 2018, `utils/metrics/SelfBleu.py`): every text is the hypothesis once, with all
the *other* texts as its references; nltk's `sentence_bleu` with BLEU-4 uniform weights (0.25 each) and
`SmoothingFunction().method1` (epsilon 0.1 added to zero n-gram match counts), averaged over the texts, times 100.
Lower = more diverse. Differences from Texygen: tokens are nltk's `wordpunct_tokenize` (a regex; Texygen's
`word_tokenize` needs the punkt model, which is not available offline), and every text is scored (Texygen's fast mode
samples 500 hypotheses; `max_hypotheses` does the same, seeded).

`self_bleu` computes exactly what nltk computes (tested against `sentence_bleu` on random inputs), but in
O(total n-grams) instead of O(N^2): for each n-gram it keeps the largest and second-largest count over all texts, so
the clip count "max over the other texts" is one lookup, and the closest other reference length is a bisection.

CLI: `python -m alignrepro.methods.mote.self_bleu --chains results/mote/tiny/chains/alignCoT-v1.jsonl
      --out results/mote/tiny/chains/alignCoT-v1.self_bleu.json --tier tiny`
"""

from __future__ import annotations

import argparse
import bisect
import logging
import math
import random
from collections import Counter
from pathlib import Path
from typing import Any

from nltk.tokenize import wordpunct_tokenize

from alignrepro.io import atomic_write_json, read_jsonl, sha256_file
from alignrepro.provenance import provenance

log = logging.getLogger(__name__)
MAX_N = 4
EPSILON = 0.1  # nltk SmoothingFunction(epsilon=0.1).method1
METRIC = {
    "name": "Self-BLEU (Texygen)",
    "bleu": "nltk sentence_bleu, BLEU-4, weights (0.25, 0.25, 0.25, 0.25)",
    "smoothing": "nltk SmoothingFunction().method1, epsilon 0.1",
    "tokenizer": "nltk wordpunct_tokenize (case kept)",
    "references": "all other texts of the same set",
    "scale": "0-100, lower = more diverse",
}
COMPONENTS = ("total_chain", "analysis", "guidance", "answer")


def tokenize(text: str) -> list[str]:
    return wordpunct_tokenize(text)


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def self_bleu_scores(texts: list[str], hypotheses: list[int] | None = None) -> list[float]:
    """BLEU-4 (0-1) of each chosen text (default: all) against all the other texts, exactly as nltk's
    sentence_bleu(others, text, smoothing_function=SmoothingFunction().method1)."""
    toks = [tokenize(t) for t in texts]
    if len(toks) < 2:
        raise ValueError("Self-BLEU needs at least two texts")
    counts = [[_ngrams(t, n) for n in range(1, MAX_N + 1)] for t in toks]
    # per n-gram: (largest count, the text holding it, second-largest count) over all texts
    top: list[dict[tuple, list]] = [{} for _ in range(MAX_N)]
    for i, per_n in enumerate(counts):
        for n_idx, c in enumerate(per_n):
            d = top[n_idx]
            for g, k in c.items():
                e = d.get(g)
                if e is None:
                    d[g] = [k, i, 0]
                elif k > e[0]:
                    e[2], e[0], e[1] = e[0], k, i
                elif k > e[2]:
                    e[2] = k
    lengths = Counter(len(t) for t in toks)
    uniq = sorted(lengths)
    out = []
    for i in range(len(toks)) if hypotheses is None else hypotheses:
        hyp_len = len(toks[i])
        numerators, denominators = [], []
        for n_idx in range(MAX_N):
            num = 0
            for g, k in counts[i][n_idx].items():
                c1, holder, c2 = top[n_idx][g]
                num += min(k, c2 if holder == i else c1)
            numerators.append(num)
            denominators.append(max(1, sum(counts[i][n_idx].values())))
        if numerators[0] == 0:
            out.append(0.0)
            continue
        ref_len = _closest_other_length(uniq, lengths, hyp_len)
        bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
        pairs = zip(numerators, denominators, strict=True)
        log_p = sum(0.25 * math.log((num if num else EPSILON) / den) for num, den in pairs)
        out.append(bp * math.exp(log_p))
    return out


def _closest_other_length(uniq: list[int], lengths: Counter, own: int) -> int:
    """nltk's closest_ref_length over the other texts: min |len - own|, ties to the shorter length."""
    if lengths[own] >= 2:
        return own
    j = bisect.bisect_left(uniq, own)
    below = next((uniq[k] for k in range(j - 1, -1, -1) if uniq[k] != own), None)
    above = next((uniq[k] for k in range(j, len(uniq)) if uniq[k] != own), None)
    cands = [x for x in (below, above) if x is not None]
    return min(cands, key=lambda x: (abs(x - own), x))


def hypothesis_scores(texts: list[str], max_hypotheses: int | None = None, seed: int = 0) -> list[float]:
    """Each hypothesis text's BLEU against the others, 0-100 (all texts, or a seeded sample of max_hypotheses)."""
    hyps = None
    if max_hypotheses is not None and max_hypotheses < len(texts):
        hyps = sorted(random.Random(seed).sample(range(len(texts)), max_hypotheses))
    return [100.0 * s for s in self_bleu_scores(texts, hyps)]


def self_bleu(texts: list[str], max_hypotheses: int | None = None, seed: int = 0) -> float:
    """Mean Self-BLEU, 0-100."""
    scores = hypothesis_scores(texts, max_hypotheses, seed)
    return sum(scores) / len(scores)


def chain_texts(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Texts per Table 2 row: the total chain (present steps joined by newlines) and each step where present."""
    out: dict[str, list[str]] = {c: [] for c in COMPONENTS}
    for r in rows:
        parts = [r.get(k) for k in ("analysis", "guidance", "answer")]
        out["total_chain"].append("\n".join(p for p in parts if p))
        for k in ("analysis", "guidance", "answer"):
            if r.get(k):
                out[k].append(r[k])
    return out


def table2_rows(rows: list[dict[str, Any]], max_hypotheses: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Per Table 2 row: the amount of texts, Self-BLEU and a percentile-bootstrap 95 % CI over the hypotheses (an
    approximation: each text's score uses the others as references, so the scores are not independent)."""
    from alignrepro.stats import bootstrap_mean_ci

    out = {}
    for name, texts in chain_texts(rows).items():
        scores = hypothesis_scores(texts, max_hypotheses, seed) if len(texts) >= 2 else []
        value = round(sum(scores) / len(scores), 2) if scores else None
        ci = bootstrap_mean_ci(scores, seed=seed) if scores else None
        out[name] = {"amount": len(texts), "self_bleu": value, "ci95": ci}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(
        prog="python -m alignrepro.methods.mote.self_bleu", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--chains", type=Path, required=True, help="chains JSONL of mote.chains")
    ap.add_argument("--out", type=Path, required=True, help="result JSON")
    ap.add_argument("--max-hypotheses", type=int, default=None, help="score a seeded sample (Texygen fast mode: 500)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tier", default="unknown")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    rows = read_jsonl(args.chains)
    result = {
        "metric": METRIC,
        "rows": table2_rows(rows, args.max_hypotheses, args.seed),
        "provenance": provenance(
            tier=args.tier,
            config={"max_hypotheses": args.max_hypotheses, **METRIC},
            seed=args.seed,
            chains={"file": str(args.chains), "sha256": sha256_file(args.chains)},
        ),
    }
    atomic_write_json(args.out, result)
    log.info("Self-BLEU %s -> %s", {k: v["self_bleu"] for k, v in result["rows"].items()}, args.out)
    return result


if __name__ == "__main__":
    main()
