# MORLAIF ("Multi-objective Reinforcement Learning from AI Feedback", arXiv 2406.07295):
# data → per-principle AI feedback → one PM per principle → weights + figures A/F/G → figure B, and scalarized PPO
# per arm → answers → pairwise judge (figures C, E) → tables. Paths carry the tier: results/morlaif/<tier>/...
import difflib

from alignrepro.methods.morlaif.arms import figure_b_arms, run_arms
from alignrepro.methods.morlaif.principles import BASELINES as ML_BASELINE_PMS

ML = config["morlaif"]
ML_R = f"results/morlaif/{TIER}"
ML_WANDB = as_json(config["wandb"])
ML_PRINCIPLES = ["helpfulness", "ethicality", "factuality", "toxicity", "sycophancy", "empathy", "relevance",
                 "context", "bias", "understandability", "detail", "conciseness"]
ML_BANK = ML_PRINCIPLES + ["cai", "hhh"]  # + the single-PM RLAIF baseline and the single-principle baseline
# The arms are rows (methods/morlaif/paper.yaml `rows:`, row folders; methods/morlaif/arms.py): the manifest rows that
# `morlaif.arms` lists, then every enabled row folder, each checked now (its function loads, its params are ones the
# function takes), so a row that cannot be built fails before any job runs. Each job gets only its own arm.
ML_ARMS = run_arms(ML["arms"], ML["scalarizer_params"], config["row_dirs"])
# Figure B scores every scalarizer row (the paper's seven, trained or not, and every enabled row folder's).
ML_FIGURE_B_ARMS = figure_b_arms(ML["scalarizer_params"], config["row_dirs"])
# The feedback model by name (evals.judges or built-in, checked at start to fit $defs feedback_model) and the options
# of its use (order, layout, ...): one spec, as the feedback step and the tables' provenance read it (+ dtype: the step).
_ml_fb_options = {k: v for k, v in ML["feedback"].items() if k != "model"}
ML_FEEDBACK_SPEC = named_spec(JUDGES, ML["feedback"]["model"], **_ml_fb_options)
ML_FEEDBACK = as_json(named_spec(JUDGES, ML["feedback"]["model"], config["dtype"], **_ml_fb_options))
ML_SHARDS = range(ML["shards"])
ML_FEEDBACK_MODEL = ([f"results/models/{ML_FEEDBACK_SPEC['model']}/model.json"]
                     if ML_FEEDBACK_SPEC["backend"] == "local" else [])
ML_GEN = as_json({**ML["generation"], "dtype": config["dtype"]})
# Names of arms that the schema cannot check (a row folder joins the arms by itself): checked against the run's arms.
for _key, _names in [("headline", [ML["headline"]]),
                     ("shared_evals", [] if ML["shared_evals"] == "all" else ML["shared_evals"])]:
    for _name in _names:
        if _name not in ML_ARMS:
            _close = difflib.get_close_matches(_name, list(ML_ARMS), n=1)
            raise ValueError(f"config key 'morlaif.{_key}': {_name!r} is not one of the run's arms {list(ML_ARMS)}"
                             + (f" (did you mean {_close[0]!r}?)" if _close else ""))
if ML["matrix_base"] not in ML["bases"]:
    raise ValueError(f"config key 'morlaif.matrix_base': {ML['matrix_base']!r} is not one of morlaif.bases")


rule morlaif_stage:
    """Prompt sets and fixed pairs: HH-RLHF (full) or the offline pool + labelled stand-in pairs (tiny/ci)."""
    output:
        f"{ML_R}/data/stage/stage.json",
    params:
        verb="hh" if ML["data"]["source"] == "hh" else "pool",
        data=as_json(ML["data"]),
        seed=config["seed"],
    log:
        f"{ML_R}/logs/stage.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.methods.morlaif.data {params.verb} --data-json {params.data:q} --seed {params.seed} "
        "--out-dir $(dirname {output}) > {log} 2>&1"


rule morlaif_sample:
    """The paper's "SFT model produces pairs" path: two sampled answers of the (first) policy per prompt."""
    input:
        stage=f"{ML_R}/data/stage/stage.json",
        model=f"results/models/{ML['bases'][0]}/model.json",
    output:
        f"{ML_R}/data/sampled.jsonl",
    params:
        gen=as_json({**ML["sample"], "max_new_tokens": ML["generation"]["max_new_tokens"],
                     "batch_size": ML["generation"]["batch_size"], "dtype": config["dtype"]}),
        seed=config["seed"],
    log:
        f"{ML_R}/logs/sample.log",
    benchmark:
        f"{ML_R}/benchmarks/sample.tsv"
    threads: config["threads"]
    resources: **res("infer")
    shell:
        "{PY} -m alignrepro.methods.morlaif.data sample --prompts $(dirname {input.stage})/prompts_sample.jsonl "
        "--model $(dirname {input.model}) --gen-json {params.gen:q} --seed {params.seed} --tier {TIER} "
        "--out {output} > {log} 2>&1"


rule morlaif_data:
    input:
        stage=f"{ML_R}/data/stage/stage.json",
        sampled=f"{ML_R}/data/sampled.jsonl" if ML["data"]["n_sampled_pairs"] else [],
    output:
        pairs=f"{ML_R}/data/pairs.jsonl",
        train=f"{ML_R}/data/prompts_train.jsonl",
        eval=f"{ML_R}/data/prompts_eval.jsonl",
        manifest=f"{ML_R}/data/manifest.json",
    params:
        data=as_json(ML["data"]),
        seed=config["seed"],
        sampled=lambda w, input: f"--sampled {input.sampled}" if input.sampled else "",
    log:
        f"{ML_R}/logs/data.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.methods.morlaif.data assemble --stage $(dirname {input.stage}) {params.sampled} "
        "--data-json {params.data:q} --seed {params.seed} --tier {TIER} --out-dir $(dirname {output.pairs}) "
        "> {log} 2>&1"


rule morlaif_feedback_shard:
    """AI feedback on every K-th pair for all principles at once (a shared prompt prefix is encoded once per pair);
    every score lands in the shared SQLite cache, which the merge step reads back."""
    input:
        pairs=f"{ML_R}/data/pairs.jsonl",
        model=ML_FEEDBACK_MODEL,
    output:
        touch(f"{ML_R}/feedback/shards/{{k}}.done"),
    params:
        fb=ML_FEEDBACK,
        seed=config["seed"],
        n=ML["shards"],
    log:
        f"{ML_R}/logs/feedback_shard{{k}}.log",
    benchmark:
        f"{ML_R}/benchmarks/feedback_shard{{k}}.tsv"
    threads: config["threads"]
    resources: **res_judge("model")
    shell:
        "{PY} -m alignrepro.methods.morlaif.feedback --pairs {input.pairs} --principle {ML_BANK} "
        "--feedback-json {params.fb:q} --tier {TIER} --seed {params.seed} --shard {wildcards.k}/{params.n} "
        "--cache {ML_R}/feedback/feedback_cache.sqlite --out-dir {ML_R}/feedback/shards/{wildcards.k} > {log} 2>&1"


rule morlaif_feedback:
    input:
        pairs=f"{ML_R}/data/pairs.jsonl",
        shards=expand(f"{ML_R}/feedback/shards/{{k}}.done", k=ML_SHARDS),
        model=ML_FEEDBACK_MODEL,
    output:
        [f"{ML_R}/feedback/{p}.jsonl" for p in ML_BANK],
    params:
        fb=ML_FEEDBACK,
        seed=config["seed"],
    log:
        f"{ML_R}/logs/feedback.log",
    resources: **res_judge("model")
    shell:
        "{PY} -m alignrepro.methods.morlaif.feedback --pairs {input.pairs} --principle {ML_BANK} "
        "--feedback-json {params.fb:q} --tier {TIER} --seed {params.seed} "
        "--cache {ML_R}/feedback/feedback_cache.sqlite --out-dir {ML_R}/feedback > {log} 2>&1"


rule morlaif_pm:
    """One preference model per principle: a LoRA adapter (sequence classification) over the shared base."""
    input:
        base="results/models/{base}/model.json",
        pairs=f"{ML_R}/data/pairs.jsonl",
        feedback=f"{ML_R}/feedback/{{principle}}.jsonl",
    output:
        f"{ML_R}/{{base}}/pms/{{principle}}/model.json",
    wildcard_constraints:
        principle="|".join(ML_BANK),
    params:
        cfg=as_json({**ML["pm"], "dtype": config["dtype"]}),
    log:
        f"{ML_R}/logs/pm_{{base}}_{{principle}}.log",
    benchmark:
        f"{ML_R}/benchmarks/pm_{{base}}_{{principle}}.tsv"
    threads: config["threads"]
    resources: **res("train")
    shell:
        "{PY} -m alignrepro.methods.morlaif.pm train --base $(dirname {input.base}) --pairs {input.pairs} "
        "--feedback {input.feedback} --principle {wildcards.principle} --config-json {params.cfg:q} "
        "--wandb-json {ML_WANDB:q} --tier {TIER} --out $(dirname {output}) > {log} 2>&1"


def ml_pm_dirs(base, principles):
    return {p: f"{ML_R}/{base}/pms/{p}" for p in principles}


rule morlaif_pm_scores:
    input:
        pms=lambda w: [f"{d}/model.json" for d in ml_pm_dirs(w.base, ML_BANK).values()],
        pairs=f"{ML_R}/data/pairs.jsonl",
    output:
        f"{ML_R}/{{base}}/pm_scores.jsonl",
    params:
        pms=lambda w: as_json(ml_pm_dirs(w.base, ML_BANK)),
        dtype=config["dtype"],
    log:
        f"{ML_R}/logs/pm_scores_{{base}}.log",
    benchmark:
        f"{ML_R}/benchmarks/pm_scores_{{base}}.tsv"
    threads: config["threads"]
    resources: **res("infer")
    shell:
        "{PY} -m alignrepro.methods.morlaif.pm score --pms-json {params.pms:q} --pairs {input.pairs} "
        "--dtype {params.dtype} --tier {TIER} --out {output} > {log} 2>&1"


rule morlaif_analysis:
    """Principle weights (logistic regression), the multi-PM ceiling and the data of figures A, F and G. Nothing here
    names an arm: every PPO arm reads weights.json, so a new row must not rewrite it (figure B is its own rule)."""
    input:
        pairs=f"{ML_R}/data/pairs.jsonl",
        feedback=[f"{ML_R}/feedback/{p}.jsonl" for p in ML_BANK],
        scores=f"{ML_R}/{{base}}/pm_scores.jsonl",
    output:
        weights=f"{ML_R}/{{base}}/analysis/weights.json",
        figures=[f"{ML_R}/{{base}}/analysis/fig_{f}.json" for f in
                 ("a_principle_accuracy", "f_principle_agreement", "g_principle_ablation")],
    params:
        cfg=as_json({**ML["analysis"], "seed": config["seed"]}),
    log:
        f"{ML_R}/logs/analysis_{{base}}.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.methods.morlaif.analysis --pairs {input.pairs} --feedback-dir {ML_R}/feedback "
        "--pm-scores {input.scores} --config-json {params.cfg:q} --tier {TIER} "
        "--out-dir $(dirname {output.weights}) > {log} 2>&1"


rule morlaif_figure_b:
    """Figure B: every scalarizer row's combined accuracy (its function and params travel in params:, so a new or
    changed row reruns this job and its own PPO arm only), the single-PM baselines and the multi-PM ceiling."""
    input:
        pairs=f"{ML_R}/data/pairs.jsonl",
        scores=f"{ML_R}/{{base}}/pm_scores.jsonl",
        weights=f"{ML_R}/{{base}}/analysis/weights.json",
    output:
        f"{ML_R}/{{base}}/analysis/fig_b_objective_accuracy.json",
    params:
        arms=as_json([a.to_json() for a in ML_FIGURE_B_ARMS.values()]),
        baselines=" ".join(ML["analysis"].get("baselines", ML_BASELINE_PMS)),
        seed=config["seed"],
    log:
        f"{ML_R}/logs/figure_b_{{base}}.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.methods.morlaif.figure_b --pairs {input.pairs} --pm-scores {input.scores} "
        "--weights {input.weights} --arms-json {params.arms:q} --baselines {params.baselines} "
        "--seed {params.seed} --tier {TIER} --out {output} > {log} 2>&1"


def ml_arm_pms(base, arm):
    """A row over the principles reads the 12 principle PMs; a single-PM row (pms: cai) that one PM."""
    pms = ML_ARMS[arm].pms
    return ml_pm_dirs(base, ML_PRINCIPLES if pms == "principles" else [pms])


rule morlaif_ppo:
    """One PPO arm: identical budget, seed and hyper-parameters for every arm (the paper's scripts differed)."""
    input:
        policy="results/models/{base}/model.json",
        pms=lambda w: [f"{d}/model.json" for d in ml_arm_pms(w.base, w.arm).values()],
        weights=lambda w: f"{ML_R}/{w.base}/analysis/weights.json" if ML_ARMS[w.arm].weighted else [],
        prompts=f"{ML_R}/data/prompts_train.jsonl",
    output:
        f"{ML_R}/{{base}}/ppo/{{arm}}/model.json",
    wildcard_constraints:
        arm="|".join(map(re.escape, ML_ARMS)),
    params:
        pms=lambda w: as_json(ml_arm_pms(w.base, w.arm)),
        row=lambda w: as_json(ML_ARMS[w.arm].to_json()),  # the arm's function, params and PMs: its own only
        weights=lambda w, input: f"--weights {input.weights}" if input.weights else "",
        cfg=as_json({**ML["ppo"], "dtype": config["dtype"]}),
        seed=config["seed"],
    log:
        f"{ML_R}/logs/ppo_{{base}}_{{arm}}.log",
    benchmark:
        f"{ML_R}/benchmarks/ppo_{{base}}_{{arm}}.tsv"
    threads: config["threads"]
    resources: **res("train")
    shell:
        "{PY} -m alignrepro.methods.morlaif.ppo --policy $(dirname {input.policy}) --pms-json {params.pms:q} "
        "{params.weights} --row-json {params.row:q} --prompts {input.prompts} --config-json {params.cfg:q} "
        "--wandb-json {ML_WANDB:q} --tier {TIER} --seed {params.seed} --arm {wildcards.arm} "
        "--out $(dirname {output}) > {log} 2>&1"


rule morlaif_respond:
    input:
        model=f"{ML_R}/{{base}}/ppo/{{arm}}/model.json",
        prompts=f"{ML_R}/data/prompts_eval.jsonl",
    output:
        f"{ML_R}/{{base}}/generations/{{arm}}.jsonl",
    params:
        gen=ML_GEN,
    log:
        f"{ML_R}/logs/respond_{{base}}_{{arm}}.log",
    benchmark:
        f"{ML_R}/benchmarks/respond_{{base}}_{{arm}}.tsv"
    threads: config["threads"]
    resources: **res("infer")
    shell:
        "{PY} -m alignrepro.methods.morlaif.compare respond --model $(dirname {input.model}) --prompts {input.prompts} "
        "--gen-json {params.gen:q} --tier {TIER} --out {output} > {log} 2>&1"


def ml_compare_inputs(arms):
    """Figures C and E share one step: pairwise win rates between arms, both orders, one judge."""
    return dict(
        gens=lambda w: [f"{ML_R}/{w.base}/generations/{a}.jsonl" for a in arms],
        judge=lambda w: judge_inputs(ML["judge"]),  # judge_inputs / judge_spec: evals/shared.smk
    )


rule morlaif_figure_c_data:
    """Figure C: the headline MORLAIF arm against the single-PM RLAIF baseline."""
    input:
        **ml_compare_inputs([ML["headline"], "single_pm"]),
    output:
        f"{ML_R}/{{base}}/eval/figure_c.json",
    params:
        gens=lambda w, input: " ".join(f"{a}={g}" for a, g in zip([ML["headline"], "single_pm"], input.gens)),
        judge=lambda w: as_json(JUDGES[ML["judge"]]),
    log:
        f"{ML_R}/logs/figure_c_{{base}}.log",
    threads: config["threads"]
    resources: **res_judge("judge")
    shell:
        "{PY} -m alignrepro.methods.morlaif.compare matrix --gens {params.gens} --judge-json {params.judge:q} "
        "--cache results/judge_cache.sqlite --tier {TIER} --out {output} > {log} 2>&1"


rule morlaif_figure_e_data:
    """Figure E: every arm against every other (the paper plotted its Single-PM column wrongly; all cells here)."""
    input:
        **ml_compare_inputs(list(ML_ARMS)),
    output:
        f"{ML_R}/{{base}}/eval/figure_e.json",
    params:
        gens=lambda w, input: " ".join(f"{a}={g}" for a, g in zip(ML_ARMS, input.gens)),
        judge=lambda w: as_json(JUDGES[ML["judge"]]),
    log:
        f"{ML_R}/logs/figure_e_{{base}}.log",
    threads: config["threads"]
    resources: **res_judge("judge")
    shell:
        "{PY} -m alignrepro.methods.morlaif.compare matrix --gens {params.gens} --judge-json {params.judge:q} "
        "--cache results/judge_cache.sqlite --tier {TIER} --out {output} > {log} 2>&1"


for _b in ML["bases"]:
    _arms = list(ML_ARMS) if ML["shared_evals"] == "all" else ML["shared_evals"]
    for _a in _arms:
        _key = f"morlaif/{_a}" if len(ML["bases"]) == 1 else f"morlaif/{_b}-{_a}"
        register_shared_model(_key, f"{ML_R}/{_b}/ppo/{_a}", _b, "morlaif", _a)

ML_ANALYSIS = {b: f"{ML_R}/{b}/analysis" for b in ML["bases"]}


rule morlaif_tables:
    """Figures A, B, C, F, G: reproduced beside reported, with provenance; the summary is printed at the end."""
    input:
        analysis=[f"{d}/weights.json" for d in ML_ANALYSIS.values()],
        figure_b=[f"{d}/fig_b_objective_accuracy.json" for d in ML_ANALYSIS.values()],
        figure_c=[f"{ML_R}/{b}/eval/figure_c.json" for b in ML["bases"]],
        ppo_logs=[f"{ML_R}/{b}/ppo/{a}/model.json" for b in ML["bases"] for a in [ML["headline"], "single_pm"]],
        feedback=[f"{ML_R}/feedback/{p}.jsonl" for p in ML_BANK],
        reported=os.path.join(workflow.basedir, "methods/morlaif/reported.yaml"),
        card=f"results/judges/{ML['judge']}.json",
    output:
        f"{ML_R}/tables/figures.md",
        report(f"{ML_R}/tables/figures.png", caption="report/figures_png.rst", category="MORLAIF",
               subcategory="plots", labels={"item": "Figures A, B, C, F, G"}),
        f"{ML_R}/tables/figures.csv",
        summary=f"{ML_R}/tables/summary.md",
        # `snakemake --report`: the tables as an HTML page, and the tier/judge facts the captions include
        html=report(f"{ML_R}/tables/figures.html", caption="report/figures.rst", category="MORLAIF",
                    subcategory="tables", labels={"item": "Figures A, B, C, F, G"}),
        facts=f"{ML_R}/tables/morlaif_tables.facts.rst",
    params:
        spec=as_json({"tier": TIER, "seed": config["seed"], "bases": ML["bases"], "root": ML_R,
                      "headline": ML["headline"], "judge": ML["judge"], "feedback": ML_FEEDBACK_SPEC}),
    log:
        f"{ML_R}/logs/tables.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.methods.morlaif.aggregate figures --spec-json {params.spec:q} "
        "--reported {input.reported} --card {input.card} --wandb-json {ML_WANDB:q} --out-dir {ML_R}/tables "
        "> {log} 2>&1 && {PY} -m alignrepro.report_pages --tier {TIER} --cards {input.card} --facts {output.facts} "
        "--page {output[0]} {output.html} >> {log} 2>&1 && cat {output.summary}"


rule morlaif_figure_e:
    """Figure E (the scalarizer win-rate matrix): 8 PPO arms, so a separate target at the tiny tier."""
    input:
        matrix=f"{ML_R}/{ML['matrix_base']}/eval/figure_e.json",
        reported=os.path.join(workflow.basedir, "methods/morlaif/reported.yaml"),
        card=f"results/judges/{ML['judge']}.json",
    output:
        f"{ML_R}/tables/figure_e.md",
        report(f"{ML_R}/tables/figure_e.png", caption="report/figure_e_png.rst", category="MORLAIF",
               subcategory="plots", labels={"item": "Figure E"}),
        html=report(f"{ML_R}/tables/figure_e.html", caption="report/figure_e.rst", category="MORLAIF",
                    subcategory="tables", labels={"item": "Figure E"}),
        facts=f"{ML_R}/tables/morlaif_figure_e.facts.rst",
    params:
        spec=as_json({"tier": TIER, "seed": config["seed"], "base": ML["matrix_base"], "judge": ML["judge"]}),
    log:
        f"{ML_R}/logs/figure_e.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.methods.morlaif.aggregate figure-e --spec-json {params.spec:q} --matrix {input.matrix} "
        "--reported {input.reported} --card {input.card} --out-dir {ML_R}/tables > {log} 2>&1 "
        "&& {PY} -m alignrepro.report_pages --tier {TIER} --cards {input.card} --facts {output.facts} "
        "--page {output[0]} {output.html} >> {log} 2>&1 && cat {output[0]}"


PAPER_TARGETS["morlaif"] = [rules.morlaif_tables.output] + ([rules.morlaif_figure_e.output] if ML["figure_e"] else [])
