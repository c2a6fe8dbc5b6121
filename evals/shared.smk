# Shared evaluation layer: every model a paper registers in SHARED_MODELS answers the shared prompts once
# (evals_respond) and is scored on AlpacaEval, MT-Bench, lm-eval and the safety pools; each judge used gets a judge
# card (results/judges/), shown beside every judged number of the leaderboard.
import shlex

from alignrepro.evals.mtbench.fastchat_files import fastchat_name
from alignrepro.evals.lmeval.run import config_args as lmeval_config_args
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
        # a size of null: the whole set (the CLI's default)
        sizes=" ".join(f"--{k.replace('_', '-')} {EV['safety'][k]}" for k in ("n_harmful", "n_benign", "n_jailbreak")
                       if EV["safety"][k] is not None),
        seed=config["seed"],
    log:
        f"{EV_R}/logs/safety_prompts.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.evals.safety.prompts --out-dir $(dirname {output}) {params.sizes} "
        "--templates-per-request {params.s[templates_per_request]} --strongreject {params.s[strongreject_set]} "
        "--seed {params.seed} > {log} 2>&1"


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
        alpaca_eval=f"{EV_R}/answers/{{key}}/model_outputs.json",  # alpaca_eval's own format
        fastchat=f"{EV_R}/answers/{{key}}/mtbench_fastchat.jsonl",  # FastChat's model_answer lines
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
        "--out-dir $(dirname {output.alpacaeval}) --model-id {wildcards.key} --tier {TIER} > {log} 2>&1"


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
        score=f"{EV_R}/scores/{{key}}/mtbench.json",
        fastchat=f"{EV_R}/scores/{{key}}/mtbench_fastchat_single.jsonl",  # FastChat's judgment lines
    wildcard_constraints:
        key=r"[^/]+/[^/]+",
    params:
        judge=EV_JUDGE,
        judge_name=EV["judge"],
    log:
        f"{EV_R}/logs/mtbench/{{key}}.log",
    benchmark:
        f"{EV_R}/benchmarks/mtbench/{{key}}.tsv"
    threads: config["threads"]
    resources: **res_judge("judge")
    shell:
        "{PY} -m alignrepro.evals.mtbench.grade --answers {input.answers} --judge-config {params.judge:q} "
        "--cache results/judge_cache.sqlite --out {output.score} --tier {TIER} --fastchat-out {output.fastchat} "
        "--model-id {wildcards.key} --judge-name {params.judge_name:q} > {log} 2>&1"


rule evals_mtbench_pairwise:
    input:
        answers=f"{EV_R}/answers/{{key}}/mtbench.jsonl",
        baseline=f"{EV_R}/answers/{EV['mtbench']['baseline']}/mtbench.jsonl",
        judge=judge_inputs(EV["judge"]),
    output:
        score=f"{EV_R}/scores/{{key}}/mtbench_pairwise.json",
        fastchat=f"{EV_R}/scores/{{key}}/mtbench_fastchat_pair.jsonl",
    wildcard_constraints:
        key=r"[^/]+/[^/]+",
    params:
        judge=EV_JUDGE,
        judge_name=EV["judge"],
        baseline=EV["mtbench"]["baseline"],
    log:
        f"{EV_R}/logs/mtbench_pairwise/{{key}}.log",
    threads: config["threads"]
    resources: **res_judge("judge")
    shell:
        "{PY} -m alignrepro.evals.mtbench.grade --answers {input.answers} --baseline {input.baseline} "
        "--judge-config {params.judge:q} --cache results/judge_cache.sqlite --out {output.score} --tier {TIER} "
        "--fastchat-out {output.fastchat} --model-id {wildcards.key} --baseline-id {params.baseline} "
        "--judge-name {params.judge_name:q} > {log} 2>&1"


rule evals_fastchat:
    """Every model's MT-Bench answers and judgments as one FastChat data/ folder (show_result.py, gen_judgment.py)."""
    input:
        answers=[f"{EV_R}/answers/{key}/mtbench_fastchat.jsonl" for key in SHARED_MODELS],
        single=[f"{EV_R}/scores/{key}/mtbench_fastchat_single.jsonl" for key in SHARED_MODELS],
        pair=[f"{EV_R}/scores/{key}/mtbench_fastchat_pair.jsonl" for key in SHARED_MODELS]
        if EV["mtbench"]["baseline"] else [],
    output:
        answers=[f"{EV_R}/fastchat/mt_bench/model_answer/{fastchat_name(key)}.jsonl" for key in SHARED_MODELS],
        single=f"{EV_R}/fastchat/mt_bench/model_judgment/{fastchat_name(EV['judge'])}_single.jsonl",
        pair=f"{EV_R}/fastchat/mt_bench/model_judgment/{fastchat_name(EV['judge'])}_pair.jsonl"
        if EV["mtbench"]["baseline"] else [],
    params:
        judge_name=EV["judge"],
    log:
        f"{EV_R}/logs/fastchat.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.evals.mtbench.fastchat_files --out-dir {EV_R}/fastchat --answers {input.answers} "
        "--single {input.single} --pair {input.pair} --judge-name {params.judge_name:q} > {log} 2>&1"


rule evals_lmeval:
    """The project's summary (lmeval.json) and, beside it, lm-eval's own results.json and samples_<task>.jsonl."""
    input:
        model=lambda w: f"{SHARED_MODELS[w.key]['dir']}/model.json",
    output:
        summary=f"{EV_R}/scores/{{key}}/lmeval.json",
        lm_eval=directory(f"{EV_R}/scores/{{key}}/lm_eval"),
    wildcard_constraints:
        key=r"[^/]+/[^/]+",
    params:
        args=shlex.join(lmeval_config_args(EV["lmeval"])),  # tasks, data, shots, limits, MMLU subset, batch size
        dtype=config["dtype"],  # the tier's dtype: "auto" would make scores depend on the CPU
    log:
        f"{EV_R}/logs/lmeval/{{key}}.log",
    benchmark:
        f"{EV_R}/benchmarks/lmeval/{{key}}.tsv"
    threads: config["threads"]
    resources: **res("infer")
    shell:
        "{PY} -m alignrepro.evals.lmeval.run --model $(dirname {input.model}) {params.args} "
        "--out {output.summary} --lm-eval-dir {output.lm_eval} --dtype {params.dtype} --tier {TIER} > {log} 2>&1"


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
        md="results/judges/{name}.md",
        # `snakemake --report`: the card as an HTML page, and the facts its caption includes
        html=report("results/judges/{name}.html", caption="report/judge_card.rst", category="Shared benchmarks",
                    subcategory="judge cards", labels={"item": "judge card: {name}"}),
        facts="results/judges/{name}.facts.rst",
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
        "--labelled-set {input.labelled} {params.per_kind} --out-json {output.json} --out-md {output.md} --tier {TIER} > {log} 2>&1 "
        "&& {PY} -m alignrepro.report_pages --tier {TIER} --cards {output.json} --facts {output.facts} "
        "--page {output.md} {output.html} >> {log} 2>&1"


EV_BENCHES = ["alpacaeval", "mtbench", "lmeval", "safety"] + (["mtbench_pairwise"] if EV["mtbench"]["baseline"] else [])


rule evals_leaderboard:
    input:
        scores=[f"{EV_R}/scores/{key}/{b}.json" for key in SHARED_MODELS for b in EV_BENCHES],
        cards=[f"results/judges/{name}.json" for name in CARDS],
        answers=[f"{EV_R}/answers/{key}/alpacaeval.jsonl" for key in SHARED_MODELS],  # average answer length
    output:
        md=f"{EV_R}/leaderboard.md",
        csv=f"{EV_R}/leaderboard.csv",
        png=report(f"{EV_R}/leaderboard.png", caption="report/leaderboard_png.rst", category="Shared benchmarks",
                   subcategory="leaderboard", labels={"item": "leaderboard plot"}),
        summary=f"{EV_R}/summary.md",
        # `snakemake --report`: the leaderboard as an HTML page, and the tier/judge facts the captions include
        html=report(f"{EV_R}/leaderboard.html", caption="report/leaderboard.rst", category="Shared benchmarks",
                    subcategory="leaderboard", labels={"item": "leaderboard"}),
        facts=f"{EV_R}/leaderboard.facts.rst",
    params:
        spec=as_json({"tier": TIER, "root": EV_R, "models": SHARED_MODELS, "benches": EV_BENCHES, "judge": EV["judge"],
                      "cards": CARDS, "seed": config["seed"], "rank_by": EV["leaderboard"]["rank_by"]}),
    log:
        f"{EV_R}/logs/leaderboard.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.evals.leaderboard --spec-json {params.spec:q} --out-dir {EV_R} > {log} 2>&1 "
        "&& {PY} -m alignrepro.report_pages --tier {TIER} --cards {input.cards} --facts {output.facts} "
        "--page {output.md} {output.html} >> {log} 2>&1 && cat {output.summary}"

