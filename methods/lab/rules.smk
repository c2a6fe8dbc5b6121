# LAB ("Large-Scale Alignment for ChatBots", arXiv 2403.01081): taxonomy → SDG per leaf with instructlab-sdg's own
# pipelines against a served teacher → foundational data → phases (KT/1, KT/2 with replay, ST with replay) → one
# checkpoint per epoch, selection → evaluation → tables. Paths carry the tier: results/lab/<tier>/...
LAB = config["lab"]
LAB_R = f"results/lab/{TIER}"
LAB_WANDB = as_json(config["wandb"])
LAB_PHASES = ["kt1", "kt2", "st"]
# each phase starts from the previous phase's selected checkpoint (KT/1 and the stacked ablation: the student)
LAB_START = {"kt1": None, "kt2": "kt1", "st": "kt2", "stacked": None}
LAB_EPOCHS = {**LAB["phases"]["epochs"], "stacked": sum(LAB["phases"]["epochs"].values())}
# the teacher: a registry model served by alignrepro.serve, the ci tier's scripted teacher, or a URL (vLLM at full)
LAB_TEACHER = (f"{LAB_R}/teacher" if LAB["teacher"]["model"] == "scripted"
               else f"results/models/{LAB['teacher']['model']}" if LAB["teacher"]["server"] == "local" else None)
if LAB["teacher"]["server"] != "local" and not LAB["teacher"]["base_url"] and TIER != "full":
    raise WorkflowError("config key 'lab.teacher.base_url': a vllm/endpoint teacher needs its /v1 URL")
LAB_TAXONOMY = as_json(LAB["taxonomy"])


def lab_model(phase):
    return f"results/models/{LAB['student']}" if phase is None else f"{LAB_R}/models/{phase}/selected"


checkpoint lab_taxonomy:
    """Every leaf validated with instructlab-schema (a broken leaf fails naming its field); the leaves found."""
    output:
        f"{LAB_R}/taxonomy/leaves.json",
    params:
        taxonomy=LAB_TAXONOMY,
    log:
        f"{LAB_R}/logs/taxonomy.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.methods.lab.steps taxonomy --taxonomy-json {params.taxonomy:q} --out {output} > {log} 2>&1"


rule lab_pipelines:
    """The tier's copies of instructlab-sdg's full pipelines: counts and sampling changed, every block and filter
    kept (checked), each file hashed into provenance."""
    output:
        f"{LAB_R}/sdg/pipelines/pipelines.json",
    params:
        sdg=as_json(LAB["sdg"]),
    log:
        f"{LAB_R}/logs/pipelines.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.methods.lab.steps pipelines --sdg-json {params.sdg:q} --out-dir $(dirname {output}) "
        "> {log} 2>&1"


rule lab_scripted_teacher:
    """ci only: a scripted teacher (a model folder of kind lab_scripted_teacher) that answers every SDG prompt in the
    library's tag format, so the whole DAG runs with a random student (README: the ci tier)."""
    output:
        f"{LAB_R}/teacher/model.json",
    log:
        f"{LAB_R}/logs/scripted_teacher.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.methods.lab.scripted_teacher --out $(dirname {output}) > {log} 2>&1"


rule lab_sdg:
    """One leaf through its library pipeline (freeform / grounded skills, knowledge) against the teacher, served
    for this job on 127.0.0.1 (or the vLLM endpoint at full): records and rows in/out per stage."""
    input:
        leaves=f"{LAB_R}/taxonomy/leaves.json",
        pipelines=rules.lab_pipelines.output[0],
        teacher=[f"{LAB_TEACHER}/model.json"] if LAB_TEACHER else [],
    output:
        records=f"{LAB_R}/sdg/{{leaf}}/records.jsonl",
        stages=f"{LAB_R}/sdg/{{leaf}}/stages.json",
    params:
        taxonomy=LAB_TAXONOMY,
        teacher=as_json(LAB["teacher"]),
        sdg=as_json(LAB["sdg"]),
        model=f"--teacher-model {LAB_TEACHER}" if LAB_TEACHER else "",
    log:
        f"{LAB_R}/logs/sdg_{{leaf}}.log",
    benchmark:
        f"{LAB_R}/benchmarks/sdg_{{leaf}}.tsv"
    threads: config["threads"]
    resources: **res("infer" if LAB_TEACHER else "api")
    shell:
        "{PY} -m alignrepro.methods.lab.steps sdg --leaf {wildcards.leaf} --taxonomy-json {params.taxonomy:q} "
        "--teacher-json {params.teacher:q} {params.model} --sdg-json {params.sdg:q} "
        "--pipelines $(dirname {input.pipelines}) --out $(dirname {output.records}) > {log} 2>&1"


def lab_leaves():
    with open(checkpoints.lab_taxonomy.get().output[0]) as f:
        return json.load(f)["leaves"]


def lab_leaf_names(wildcards=None, knowledge=None):
    """The leaves' names; knowledge True/False: only the knowledge / only the skills leaves."""
    return [leaf["name"] for leaf in lab_leaves() if knowledge is None or (leaf["kind"] == "knowledge") == knowledge]


def lab_mmlu_bench_files(wildcards=None):
    """MMLU-branch questions generated for the knowledge leaves that ship none (tonsils ships 27; phoenix none)."""
    return [f"{LAB_R}/mmlu_bench/{leaf['name']}/questions.jsonl" for leaf in lab_leaves()
            if leaf["kind"] == "knowledge" and not leaf["mmlu_branch_questions"]]


rule lab_mmlu_bench:
    """A knowledge leaf's MMLU-branch questions: the library's mmlu_bench pipeline and its MCQ post-processing,
    against the served teacher (ilab's generate_data does this for every knowledge leaf)."""
    input:
        leaves=f"{LAB_R}/taxonomy/leaves.json",
        pipelines=rules.lab_pipelines.output[0],
        teacher=[f"{LAB_TEACHER}/model.json"] if LAB_TEACHER else [],
    output:
        questions=f"{LAB_R}/mmlu_bench/{{leaf}}/questions.jsonl",
        stages=f"{LAB_R}/mmlu_bench/{{leaf}}/stages.json",
    params:
        taxonomy=LAB_TAXONOMY,
        teacher=as_json(LAB["teacher"]),
        sdg=as_json(LAB["sdg"]),
        model=f"--teacher-model {LAB_TEACHER}" if LAB_TEACHER else "",
    log:
        f"{LAB_R}/logs/mmlu_bench_{{leaf}}.log",
    benchmark:
        f"{LAB_R}/benchmarks/mmlu_bench_{{leaf}}.tsv"
    threads: config["threads"]
    resources: **res("infer" if LAB_TEACHER else "api")
    shell:
        "{PY} -m alignrepro.methods.lab.steps mmlu-bench --leaf {wildcards.leaf} --taxonomy-json {params.taxonomy:q} "
        "--teacher-json {params.teacher:q} {params.model} --sdg-json {params.sdg:q} "
        "--pipelines $(dirname {input.pipelines}) --out $(dirname {output.questions}) > {log} 2>&1"


rule lab_foundational:
    output:
        train=f"{LAB_R}/data/foundational_train.jsonl",
        test=f"{LAB_R}/data/foundational_test.jsonl",
    params:
        f=LAB["foundational"],
        seed=config["seed"],
    log:
        f"{LAB_R}/logs/foundational.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.methods.lab.steps foundational --train {params.f[train]} --test {params.f[test]} "
        "--seed {params.seed} --out-dir $(dirname {output.train}) > {log} 2>&1"


def lab_heldout_records(w):
    knowledge = True if w.part == "knowledge" else None
    return [f"{LAB_R}/sdg/{leaf}/records.jsonl" for leaf in lab_leaf_names(knowledge=knowledge)]


rule lab_heldout:
    """Generated records split per leaf into training and held-out (the held-out NLL of every model): every leaf
    (part all), or the knowledge leaves alone (part knowledge: the same split of theirs, seeded per leaf, so the
    knowledge phases need not wait for the skills leaves)."""
    input:
        lab_heldout_records,
    output:
        train=f"{LAB_R}/data/sdg_{{part}}_train.jsonl",
        heldout=f"{LAB_R}/data/sdg_{{part}}_heldout.jsonl",
    wildcard_constraints:
        part="all|knowledge",
    params:
        fraction=LAB["sdg"]["heldout_fraction"],
        seed=config["seed"],
    log:
        f"{LAB_R}/logs/heldout_{{part}}.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.methods.lab.steps heldout --records {input} --fraction {params.fraction} "
        "--seed {params.seed} --out-dir $(dirname {output.train})/split_{wildcards.part} > {log} 2>&1 && "
        "mv $(dirname {output.train})/split_{wildcards.part}/train.jsonl {output.train} && "
        "mv $(dirname {output.train})/split_{wildcards.part}/heldout.jsonl {output.heldout} && "
        "rmdir $(dirname {output.train})/split_{wildcards.part}"


LAB_HELDOUT = f"{LAB_R}/data/sdg_all_heldout.jsonl"


rule lab_phases_knowledge:
    """Table 1's knowledge phases first: KT/1 short knowledge; KT/2 long knowledge + foundational, replaying KT/1.
    Split at the median answer length (student tokens). From the knowledge leaves alone: KT/1 trains while the
    skills leaves are still being generated."""
    input:
        sdg=f"{LAB_R}/data/sdg_knowledge_train.jsonl",
        foundational=rules.lab_foundational.output.train,
        student=f"results/models/{LAB['student']}/model.json",
    output:
        [f"{LAB_R}/phases/{p}.jsonl" for p in ["kt1", "kt2"]],
        manifest=f"{LAB_R}/phases/knowledge.json",
    params:
        split=LAB["phases"]["split"],
        replay=LAB["phases"]["replay_fraction"],
        seed=config["seed"],
    log:
        f"{LAB_R}/logs/phases_knowledge.log",
    resources: **res("cpu_model")
    shell:
        "{PY} -m alignrepro.methods.lab.phases --knowledge-only --records {input.sdg} {input.foundational} "
        "--tokenizer-model $(dirname {input.student}) --split {params.split} --replay-fraction {params.replay} "
        "--seed {params.seed} --out $(dirname {output.manifest}) > {log} 2>&1"


rule lab_phases:
    """ST compositional skills, replaying both knowledge phases; the stacked ablation: everything once; the manifest
    of every phase (the knowledge phases checked against knowledge.json: the same records)."""
    input:
        sdg=f"{LAB_R}/data/sdg_all_train.jsonl",
        foundational=rules.lab_foundational.output.train,
        student=f"results/models/{LAB['student']}/model.json",
        knowledge=rules.lab_phases_knowledge.output.manifest,
    output:
        [f"{LAB_R}/phases/{p}.jsonl" for p in ["st", "stacked"]],
        manifest=f"{LAB_R}/phases/manifest.json",
    params:
        split=LAB["phases"]["split"],
        replay=LAB["phases"]["replay_fraction"],
        seed=config["seed"],
    log:
        f"{LAB_R}/logs/phases.log",
    resources: **res("cpu_model")
    shell:
        "{PY} -m alignrepro.methods.lab.phases --records {input.sdg} {input.foundational} "
        "--knowledge-manifest {input.knowledge} "
        "--tokenizer-model $(dirname {input.student}) --split {params.split} --replay-fraction {params.replay} "
        "--seed {params.seed} --out $(dirname {output.manifest}) > {log} 2>&1"


rule lab_train:
    """One phase from the previous phase's selected checkpoint; a checkpoint (model folder) per epoch; linear warm-up
    then a constant learning rate (no decay between phases)."""
    input:
        start=lambda w: f"{lab_model(LAB_START[w.phase])}/model.json",
        data=f"{LAB_R}/phases/{{phase}}.jsonl",
    output:
        f"{LAB_R}/models/{{phase}}/phase.json",
    wildcard_constraints:
        phase="kt1|kt2|st|stacked",
    params:
        cfg=lambda w: as_json({"train": {**LAB["train"], "epochs": LAB_EPOCHS[w.phase]}, "dtype": config["dtype"]}),
    log:
        f"{LAB_R}/logs/train_{{phase}}.log",
    benchmark:
        f"{LAB_R}/benchmarks/train_{{phase}}.tsv"
    threads: LAB["train_threads"] or config["threads"]
    resources: **res("train")
    shell:
        "{PY} -m alignrepro.methods.lab.train --start-model $(dirname {input.start}) --data {input.data} "
        "--config-json {params.cfg:q} --wandb-json {LAB_WANDB:q} --phase {wildcards.phase} "
        "--name lab-{TIER}-{wildcards.phase} --tier {TIER} --out $(dirname {output}) > {log} 2>&1"


rule lab_epoch_mmlu_branch:
    """A knowledge phase's epoch checkpoint scored on MMLU-branch (its selection metric, paper: MMLU)."""
    input:
        phase=f"{LAB_R}/models/{{phase}}/phase.json",
        mc=lab_mmlu_bench_files,
    output:
        f"{LAB_R}/models/{{phase}}/epoch{{k}}.mmlu_branch.json",
    wildcard_constraints:
        phase="kt1|kt2",
        k=r"\d+",
    params:
        dtype=config["dtype"],
    log:
        f"{LAB_R}/logs/mmlu_branch_{{phase}}_epoch{{k}}.log",
    threads: config["threads"]
    resources: **res("infer")
    shell:
        "{PY} -m alignrepro.methods.lab.evaluate --model $(dirname {input.phase})/epoch{wildcards.k} --only mmlu_branch "
        "--mc-extra {input.mc} --dtype {params.dtype} --tier {TIER} --out {output} > {log} 2>&1"


LAB_SKILLS_JUDGE = LAB["select"]["judge"] or config["evals"]["judge"]


rule lab_epoch_mtbench_answers:
    """A skills-phase epoch checkpoint answers MT-Bench (both turns; the shared layer's question subset)."""
    input:
        phase=f"{LAB_R}/models/{{phase}}/phase.json",
    output:
        f"{LAB_R}/models/{{phase}}/epoch{{k}}.mtbench_answers.jsonl",
    wildcard_constraints:
        phase="st|stacked",
        k=r"\d+",
    params:
        gen=as_json({**config["evals"]["generation"], "dtype": config["dtype"]}),
        per_cat=(f"--per-category {config['evals']['mtbench']['per_category']}"
                 if config["evals"]["mtbench"]["per_category"] else ""),
        seed=config["seed"],
        max_new=config["evals"]["generation"]["max_new_tokens"],
    log:
        f"{LAB_R}/logs/mtbench_answers_{{phase}}_epoch{{k}}.log",
    threads: config["threads"]
    resources: **res("infer")
    shell:
        "{PY} -m alignrepro.evals.mtbench.answer --model $(dirname {input.phase})/epoch{wildcards.k} {params.per_cat} "
        "--seed {params.seed} --max-new-tokens {params.max_new} --spec-json {params.gen:q} --tier {TIER} "
        "--out {output} > {log} 2>&1"


rule lab_epoch_mtbench:
    """The skills phase's selection metric (paper: MT-Bench), graded by the named judge; its card sits beside the
    evaluation layer's."""
    input:
        answers=f"{LAB_R}/models/{{phase}}/epoch{{k}}.mtbench_answers.jsonl",
        judge=lambda w: judge_inputs(LAB_SKILLS_JUDGE),
    output:
        f"{LAB_R}/models/{{phase}}/epoch{{k}}.mtbench.json",
    wildcard_constraints:
        phase="st|stacked",
        k=r"\d+",
    params:
        judge=lambda w: as_json(judge_spec(LAB_SKILLS_JUDGE)),
    log:
        f"{LAB_R}/logs/mtbench_{{phase}}_epoch{{k}}.log",
    threads: config["threads"]
    resources: **res_judge("judge")
    shell:
        "{PY} -m alignrepro.evals.mtbench.grade --answers {input.answers} --judge-config {params.judge:q} "
        "--cache results/judge_cache.sqlite --out {output} --tier {TIER} > {log} 2>&1"


def lab_epoch_scores(w):
    """Per-epoch score files of a phase's selection metric (none for held-out NLL: select computes it)."""
    metric = {"kt1": "mmlu_branch", "kt2": "mmlu_branch"}.get(w.phase, LAB["select"]["skills"])
    if metric == "heldout_nll":
        return []
    return [f"{LAB_R}/models/{w.phase}/epoch{k}.{metric}.json" for k in range(1, LAB_EPOCHS[w.phase] + 1)]


def lab_select_args(w, input):
    if w.phase in ("kt1", "kt2"):
        return f"--scores {' '.join(input.scores)} --key metrics.mmlu_branch --metric mmlu_branch --direction higher"
    if LAB["select"]["skills"] == "mtbench":
        return f"--scores {' '.join(input.scores)} --key score --metric mtbench --direction higher"
    return f"--heldout {input.heldout} --metric heldout_nll --direction lower"


rule lab_select:
    """The phase's checkpoint: MMLU-branch accuracy for the knowledge phases, MT-Bench (full; held-out NLL at ci and
    tiny) for the skills phase and the stacked ablation, the earlier checkpoint on ties."""
    input:
        phase=f"{LAB_R}/models/{{phase}}/phase.json",
        scores=lab_epoch_scores,
        heldout=lambda w: [LAB_HELDOUT] if w.phase in ("st", "stacked") else [],  # the knowledge phases: MMLU-branch
    output:
        f"{LAB_R}/models/{{phase}}/selected.json",
        f"{LAB_R}/models/{{phase}}/selected/model.json",
    wildcard_constraints:
        phase="kt1|kt2|st|stacked",
    params:
        how=lab_select_args,
        tol=LAB["select"]["tolerance"],
        dtype=config["dtype"],
        max_length=LAB["train"]["max_length"],
    log:
        f"{LAB_R}/logs/select_{{phase}}.log",
    threads: config["threads"]
    resources: **res("infer")
    shell:
        "{PY} -m alignrepro.methods.lab.select --phase-dir $(dirname {input.phase}) {params.how} "
        "--tolerance {params.tol} --max-length {params.max_length} --dtype {params.dtype} > {log} 2>&1"


LAB_EVAL_MODELS = {"base": None, "lab": "st", "stacked": "stacked"}


rule lab_evaluate:
    """Judge-free evaluation: MMLU-branch accuracy (the knowledge leaves' questions), oracle accuracy on held-out
    foundational tasks, held-out NLL of generated pairs."""
    input:
        model=lambda w: f"{lab_model(LAB_EVAL_MODELS[w.model])}/model.json",
        foundational=rules.lab_foundational.output.test,
        heldout=LAB_HELDOUT,
        mc=lab_mmlu_bench_files,
    output:
        f"{LAB_R}/eval/{{model}}.json",
    wildcard_constraints:
        model="base|lab|stacked",
    params:
        e=LAB["eval"],
        dtype=config["dtype"],
    log:
        f"{LAB_R}/logs/evaluate_{{model}}.log",
    benchmark:
        f"{LAB_R}/benchmarks/evaluate_{{model}}.tsv"
    threads: config["threads"]
    resources: **res("infer")
    shell:
        "{PY} -m alignrepro.methods.lab.evaluate --model $(dirname {input.model}) --foundational {input.foundational} "
        "--heldout {input.heldout} --mc-extra {input.mc} --max-new-tokens {params.e[max_new_tokens]} "
        "--batch-size {params.e[batch_size]} "
        "--dtype {params.dtype} --tier {TIER} --out {output} > {log} 2>&1"


def lab_table_inputs(with_stacked):
    return {
        "stages": lambda w: [f"{LAB_R}/sdg/{leaf}/stages.json" for leaf in lab_leaf_names()],
        "mc": lab_mmlu_bench_files,
        "manifest": f"{LAB_R}/phases/manifest.json",
        "selected": [f"{LAB_R}/models/{p}/selected.json" for p in LAB_PHASES + (["stacked"] if with_stacked else [])],
        "evals": [f"{LAB_R}/eval/{m}.json" for m in ["base", "lab"] + (["stacked"] if with_stacked else [])],
        "reported": os.path.join(workflow.basedir, "methods/lab/reported.yaml"),
    }


def lab_table_spec(with_stacked):
    def spec(w):
        return as_json({
            "tier": TIER, "seed": config["seed"], "bootstrap": 2000, "root": LAB_R,
            "teacher": LAB["teacher"]["model"], "student": LAB["student"],
            "sdg_stages": [f"{LAB_R}/sdg/{leaf}/stages.json" for leaf in lab_leaf_names()]
            + [f.replace("questions.jsonl", "stages.json") for f in lab_mmlu_bench_files()],
            "phase_manifest": f"{LAB_R}/phases/manifest.json",
            "selections": {p: f"{LAB_R}/models/{p}/selected.json"
                           for p in LAB_PHASES + (["stacked"] if with_stacked else [])},
            "evals": {"base": f"{LAB_R}/eval/base.json", "lab": f"{LAB_R}/eval/lab.json",
                      "stacked": f"{LAB_R}/eval/stacked.json" if with_stacked else None},
        })
    return spec


rule lab_tables:
    input:
        **lab_table_inputs(False),
    output:
        f"{LAB_R}/tables/table3.md",
        f"{LAB_R}/tables/table3.csv",
        f"{LAB_R}/tables/table3_differences.csv",
        f"{LAB_R}/tables/sdg_keep_rates.md",
        f"{LAB_R}/tables/phases.md",
        report(f"{LAB_R}/tables/table3.png", caption="report/table3_png.rst", category="LAB", subcategory="plots",
               labels={"item": "Table 3 analogue"}),
        f"{LAB_R}/tables/reported.md",
        summary=f"{LAB_R}/tables/summary.md",
        # `snakemake --report`: the tables as HTML pages, and the tier facts the captions include
        table3=report(f"{LAB_R}/tables/table3.html", caption="report/table3.rst", category="LAB",
                      subcategory="tables", labels={"item": "Table 3 analogue"}),
        keep_rates=report(f"{LAB_R}/tables/sdg_keep_rates.html", caption="report/sdg_keep_rates.rst",
                          category="LAB", subcategory="tables", labels={"item": "SDG keep-rates"}),
        phases=report(f"{LAB_R}/tables/phases.html", caption="report/phases.rst", category="LAB",
                      subcategory="tables", labels={"item": "phases and checkpoints"}),
        reported=report(f"{LAB_R}/tables/reported.html", caption="report/reported.rst", category="LAB",
                        subcategory="tables", labels={"item": "reported Table 3 (as published)"}),
        facts=f"{LAB_R}/tables/lab_tables.facts.rst",
    params:
        spec=lab_table_spec(False),
    log:
        f"{LAB_R}/logs/tables.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.methods.lab.aggregate --spec-json {params.spec:q} --reported {input.reported} "
        "--out-dir {LAB_R}/tables --wandb-json {LAB_WANDB:q} > {log} 2>&1 "
        "&& {PY} -m alignrepro.report_pages --tier {TIER} --facts {output.facts} --page {output[0]} {output.table3} "
        "--page {output[3]} {output.keep_rates} --page {output[4]} {output.phases} "
        "--page {output[6]} {output.reported} >> {log} 2>&1 && cat {output.summary}"


rule lab_ablations:
    """The stacked ablation: the same data in one SFT from the student, beside the phased model."""
    input:
        **lab_table_inputs(True),
    output:
        f"{LAB_R}/tables/ablation/table3.md",
        f"{LAB_R}/tables/ablation/table3_differences.csv",
        summary=f"{LAB_R}/tables/ablation/summary.md",
    params:
        spec=lab_table_spec(True),
    log:
        f"{LAB_R}/logs/ablations.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.methods.lab.aggregate --spec-json {params.spec:q} --reported {input.reported} "
        "--out-dir {LAB_R}/tables/ablation --wandb-json {LAB_WANDB:q} > {log} 2>&1 && cat {output.summary}"


if LAB["shared_evals"]:
    register_shared_model("lab/lab", lab_model("st"), LAB["student"], "lab", "lab")
    if LAB["ablations_in_default"]:
        register_shared_model("lab/stacked", lab_model("stacked"), LAB["student"], "lab", "stacked")

PAPER_TARGETS["lab"] = [rules.lab_tables.output] + ([rules.lab_ablations.output] if LAB["ablations_in_default"] else [])
