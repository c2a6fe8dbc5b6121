# Shared evaluation layer: every model a paper registers in SHARED_MODELS answers the shared prompts once
# (evals_respond) and is scored on AlpacaEval, MT-Bench, lm-eval and the safety pools; each judge used gets a judge
# card (results/judges/), shown beside every judged number of the leaderboard.
import shlex

from alignrepro.external import plan as external_plan

EV = config["evals"]
EV_R = f"results/evals/{TIER}"
# Your own checkpoints (evals.external): a plain HF folder or a PEFT adapter folder joins the board as
# external/<name>. evals_import_model writes a reference to it (results/evals/<tier>/external/<name>/model.json, no
# weights copied); the checkpoint's files are that rule's inputs, so a changed checkpoint is re-imported and re-scored.
# Its AlpacaEval reference (reference: base) is its registry base, else the papers' first base, else the first
# registry model: the same reference as the rows it sits beside.
EV_EXTERNAL = {}
_bases = [k.split("/", 1)[1] for k in SHARED_MODELS if k.startswith("base/")]
for _name, _entry in EV["external"].items():
    _plan = external_plan(_name, _entry, config["models"])
    _ref = _plan["registry_base"] or (_bases or list(config["models"]) or [None])[0]
    if _ref is None and EV["alpacaeval"]["reference"] == "base":
        raise ValueError(f"config key 'evals.external.{_name}': no registry model to answer as its AlpacaEval reference")
    _dir = _plan["path"] if _plan["kind"] == "model" else f"{EV_R}/external/{_name}"
    EV_EXTERNAL[_name] = _plan
    _what = {"hf": "model folder", "peft": "PEFT adapter", "model": "model folder"}[_plan["kind"]]
    _vs = f"; AlpacaEval vs base/{_ref}" if EV["alpacaeval"]["reference"] == "base" else ""
    SHARED_MODELS[f"external/{_name}"] = {"dir": _dir, "base": _plan["registry_base"] or "-", "reference": _ref,
                                          "paper": "external", "method": _name,
                                          "note": f"your checkpoint ({_what} {_entry['path']}{_vs})"}
    for _b in dict.fromkeys([_plan["registry_base"], _ref if EV["alpacaeval"]["reference"] == "base" else None]):
        if _b is None:
            continue
        SHARED_MODELS.setdefault(f"base/{_b}", {"dir": f"results/models/{_b}", "base": _b, "paper": "-", "method": "base"})
if EV["mtbench"]["baseline"] is not None and EV["mtbench"]["baseline"] not in SHARED_MODELS:
    raise ValueError(f"config key 'evals.mtbench.baseline': {EV['mtbench']['baseline']!r} is not a model key "
                     f"({', '.join(sorted(SHARED_MODELS))})")
CARDS = list(dict.fromkeys([EV["judge"], *EV["cards"]]))


def judge_spec(name):
    return resolve_spec(JUDGES[name], dtype=config["dtype"])


def judge_inputs(name):
    s = judge_spec(name)
    return [f"{s['model_dir']}/model.json"] if "model_dir" in s else []


EV_JUDGE = as_json(judge_spec(EV["judge"]))
EV_GEN_SPEC = {**EV["generation"], "dtype": config["dtype"]}  # + a model's own keys (SHARED_MODELS "generation")


rule evals_alpacaeval_prompts:
    output:
        prompts=f"{EV_R}/prompts/alpacaeval.jsonl",
        reference=f"{EV_R}/prompts/alpacaeval_reference.jsonl" if EV["alpacaeval"]["reference"] == "dataset" else [],
    params:
        p=EV["alpacaeval"]["prompts"],
        n=f"--n {EV['alpacaeval']['n']}" if EV["alpacaeval"]["n"] else "",
        ref=lambda w, output: f"--reference-out {output.reference}" if output.reference else "",
    log:
        f"{EV_R}/logs/alpacaeval_prompts.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.evals.alpacaeval.prompts --source {params.p[source]} "
        + ("--path {params.p[path]:q} --data-file {params.p[data_file]:q} " if EV["alpacaeval"]["prompts"]["source"] == "file" else "")
        + "{params.n} --out {output.prompts} {params.ref} > {log} 2>&1"


rule evals_safety_prompts:
    output:
        f"{EV_R}/prompts/safety/manifest.json",
    params:
        s=EV["safety"],
        seed=config["seed"],
    log:
        f"{EV_R}/logs/safety_prompts.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.evals.safety.prompts --out-dir $(dirname {output}) --n-harmful {params.s[n_harmful]} "
        "--n-benign {params.s[n_benign]} --n-jailbreak {params.s[n_jailbreak]} --seed {params.seed} > {log} 2>&1"


rule evals_import_model:
    """A reference to an external checkpoint (alignrepro.external): its files are the inputs, nothing is copied."""
    input:
        lambda w: EV_EXTERNAL[w.name]["inputs"],
    output:
        f"{EV_R}/external/{{name}}/model.json",
    wildcard_constraints:
        name=r"[^/]+",
    params:
        path=lambda w: EV_EXTERNAL[w.name]["path"],
        base=lambda w: f"--base {shlex.quote(EV_EXTERNAL[w.name]['base'])}" if EV_EXTERNAL[w.name]["base"] else "",
        template=lambda w: EV_EXTERNAL[w.name]["prompt_template"],
    log:
        f"{EV_R}/logs/external/{{name}}.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.external --path {params.path:q} --name {wildcards.name} {params.base} "
        "--prompt-template {params.template} --out $(dirname {output}) > {log} 2>&1"


rule evals_respond:
    """One job per model: it answers AlpacaEval, MT-Bench (2 turns) and the safety pools, loading the model once."""
    input:
        model=lambda w: f"{SHARED_MODELS[w.key]['dir']}/model.json",
        alpacaeval=rules.evals_alpacaeval_prompts.output.prompts,
        safety=rules.evals_safety_prompts.output[0],
    output:
        alpacaeval=f"{EV_R}/answers/{{key}}/alpacaeval.jsonl",
        mtbench=f"{EV_R}/answers/{{key}}/mtbench.jsonl",
        safety=f"{EV_R}/answers/{{key}}/safety.jsonl",
    wildcard_constraints:
        key=r"[^/]+/[^/]+",
    params:
        gen=lambda w: as_json({**EV_GEN_SPEC, **SHARED_MODELS[w.key].get("generation", {})}),
        per_cat=f"--mtbench-per-category {EV['mtbench']['per_category']}" if EV["mtbench"]["per_category"] else "",
        seed=config["seed"],
    log:
        f"{EV_R}/logs/respond/{{key}}.log",
    benchmark:
        f"{EV_R}/benchmarks/respond/{{key}}.tsv"
    threads: config["threads"]
    resources: **res("infer")
    shell:
        "{PY} -m alignrepro.evals.respond --model $(dirname {input.model}) --alpacaeval-prompts {input.alpacaeval} "
        "--safety-prompts-dir $(dirname {input.safety}) {params.per_cat} --seed {params.seed} --spec-json {params.gen:q} "
        "--out-dir $(dirname {output.alpacaeval}) --tier {TIER} > {log} 2>&1"


def alpacaeval_reference(w):
    if EV["alpacaeval"]["reference"] == "dataset":
        return rules.evals_alpacaeval_prompts.output.reference
    m = SHARED_MODELS[w.key]
    return f"{EV_R}/answers/base/{m.get('reference', m['base'])}/alpacaeval.jsonl"  # external models name theirs


rule evals_alpacaeval:
    input:
        model=f"{EV_R}/answers/{{key}}/alpacaeval.jsonl",
        reference=alpacaeval_reference,
        judge=judge_inputs(EV["judge"]),
    output:
        f"{EV_R}/scores/{{key}}/alpacaeval.json",
    wildcard_constraints:
        key=r"[^/]+/[^/]+",
    params:
        judge=EV_JUDGE,  # a param, not a global in the shell string: a changed judge reruns the job
    log:
        f"{EV_R}/logs/alpacaeval/{{key}}.log",
    benchmark:
        f"{EV_R}/benchmarks/alpacaeval/{{key}}.tsv"
    threads: config["threads"]
    resources: **res_judge("judge")
    shell:
        "{PY} -m alignrepro.evals.alpacaeval.winrate --model-outputs {input.model} --reference-outputs {input.reference} "
        "--judge-config {params.judge:q} --cache results/judge_cache.sqlite --out {output} --tier {TIER} > {log} 2>&1"


rule evals_mtbench:
    input:
        answers=f"{EV_R}/answers/{{key}}/mtbench.jsonl",
        judge=judge_inputs(EV["judge"]),
    output:
        f"{EV_R}/scores/{{key}}/mtbench.json",
    wildcard_constraints:
        key=r"[^/]+/[^/]+",
    params:
        judge=EV_JUDGE,
    log:
        f"{EV_R}/logs/mtbench/{{key}}.log",
    benchmark:
        f"{EV_R}/benchmarks/mtbench/{{key}}.tsv"
    threads: config["threads"]
    resources: **res_judge("judge")
    shell:
        "{PY} -m alignrepro.evals.mtbench.grade --answers {input.answers} --judge-config {params.judge:q} "
        "--cache results/judge_cache.sqlite --out {output} --tier {TIER} > {log} 2>&1"


rule evals_mtbench_pairwise:
    input:
        answers=f"{EV_R}/answers/{{key}}/mtbench.jsonl",
        baseline=f"{EV_R}/answers/{EV['mtbench']['baseline']}/mtbench.jsonl",
        judge=judge_inputs(EV["judge"]),
    output:
        f"{EV_R}/scores/{{key}}/mtbench_pairwise.json",
    wildcard_constraints:
        key=r"[^/]+/[^/]+",
    params:
        judge=EV_JUDGE,
    log:
        f"{EV_R}/logs/mtbench_pairwise/{{key}}.log",
    threads: config["threads"]
    resources: **res_judge("judge")
    shell:
        "{PY} -m alignrepro.evals.mtbench.grade --answers {input.answers} --baseline {input.baseline} "
        "--judge-config {params.judge:q} --cache results/judge_cache.sqlite --out {output} --tier {TIER} > {log} 2>&1"


rule evals_lmeval:
    input:
        model=lambda w: f"{SHARED_MODELS[w.key]['dir']}/model.json",
    output:
        f"{EV_R}/scores/{{key}}/lmeval.json",
    wildcard_constraints:
        key=r"[^/]+/[^/]+",
    params:
        tasks=",".join(EV["lmeval"]["tasks"]),
        data=as_json(EV["lmeval"]["data"]),
        fewshot=f"--num-fewshot {EV['lmeval']['num_fewshot']}" if EV["lmeval"]["num_fewshot"] is not None else "",
        limit=f"--limit {EV['lmeval']['limit']}" if EV["lmeval"]["limit"] else "",
        bs=EV["lmeval"]["batch_size"],
        dtype=config["dtype"],  # the tier's dtype: "auto" would make scores depend on the CPU
    log:
        f"{EV_R}/logs/lmeval/{{key}}.log",
    benchmark:
        f"{EV_R}/benchmarks/lmeval/{{key}}.tsv"
    threads: config["threads"]
    resources: **res("infer")
    shell:
        "{PY} -m alignrepro.evals.lmeval.run --model $(dirname {input.model}) --tasks {params.tasks} "
        "--data-json {params.data:q} {params.fewshot} {params.limit} --batch-size {params.bs} --out {output} "
        "--dtype {params.dtype} --tier {TIER} > {log} 2>&1"


rule evals_safety:
    input:
        answers=f"{EV_R}/answers/{{key}}/safety.jsonl",
        judge=judge_inputs(EV["judge"]),
    output:
        f"{EV_R}/scores/{{key}}/safety.json",
    wildcard_constraints:
        key=r"[^/]+/[^/]+",
    params:
        threshold=EV["safety"]["harmless_threshold"],
        judge=EV_JUDGE,
    log:
        f"{EV_R}/logs/safety/{{key}}.log",
    benchmark:
        f"{EV_R}/benchmarks/safety/{{key}}.tsv"
    threads: config["threads"]
    resources: **res_judge("judge")
    shell:
        "{PY} -m alignrepro.evals.safety.score --answers {input.answers} --judge-config {params.judge:q} "
        "--harmful-threshold {params.threshold} --cache results/judge_cache.sqlite --out {output} --tier {TIER} "
        "> {log} 2>&1"


rule judge_card:
    """A judge's measured reliability on the shipped labelled set (tier-independent: same judge, same card)."""
    input:
        labelled=os.path.join(workflow.basedir, "evals/judges/labelled_set.jsonl"),
        judge=lambda w: judge_inputs(w.name),
    output:
        json="results/judges/{name}.json",
        md=report("results/judges/{name}.md", category="Judge cards"),
    params:
        spec=lambda w: as_json(judge_spec(w.name)),
        per_kind=f"--per-kind {EV['card_pairs_per_kind']}" if EV["card_pairs_per_kind"] else "",
    log:
        "results/logs/judges/{name}.log",
    benchmark:
        "results/benchmarks/judges/{name}.tsv"
    threads: config["threads"]
    resources: **res_judge("judge")
    shell:
        "{PY} -m alignrepro.evals.judges.card --name {wildcards.name} --judge-config {params.spec:q} "
        "--labelled-set {input.labelled} {params.per_kind} --out-json {output.json} --out-md {output.md} --tier {TIER} > {log} 2>&1"


EV_BENCHES = ["alpacaeval", "mtbench", "lmeval", "safety"] + (["mtbench_pairwise"] if EV["mtbench"]["baseline"] else [])


rule evals_leaderboard:
    input:
        scores=[f"{EV_R}/scores/{key}/{b}.json" for key in SHARED_MODELS for b in EV_BENCHES],
        cards=[f"results/judges/{name}.json" for name in CARDS],
        answers=[f"{EV_R}/answers/{key}/alpacaeval.jsonl" for key in SHARED_MODELS],  # average answer length
    output:
        md=report(f"{EV_R}/leaderboard.md", category="Leaderboard", labels={"table": "shared benchmarks"}),
        csv=f"{EV_R}/leaderboard.csv",
        png=report(f"{EV_R}/leaderboard.png", category="Leaderboard", labels={"figure": "shared benchmarks"}),
        summary=f"{EV_R}/summary.md",
    params:
        spec=as_json({"tier": TIER, "root": EV_R, "models": SHARED_MODELS, "benches": EV_BENCHES, "judge": EV["judge"],
                      "cards": CARDS, "seed": config["seed"], "rank_by": EV["leaderboard"]["rank_by"]}),
    log:
        f"{EV_R}/logs/leaderboard.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.evals.leaderboard --spec-json {params.spec:q} --out-dir {EV_R} > {log} 2>&1 "
        "&& cat {output.summary}"

