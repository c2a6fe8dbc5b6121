# MoTE ("Mixture of insighTful Experts", arXiv 2405.00557): queries → AlignCoT chains written by the base model
# itself → Self-BLEU (Table 2) → MoTE + the Table 4 architectures + the Table 1 baselines (same queries, base and
# budget) → answers on the test queries → Help / Harm / Harm-Help (+ over-refusal, goodness@0.1 stand-ins) →
# Tables 1, 2, 3 (target mote_tables) and Tables 4, 6 + Fig. 6 (target mote_ablations). Paths:
# results/mote/<tier>/{data, <base>/{chains, baselines, models, answers, eval}, tables}.
MT = config["mote"]
MT_R = f"results/mote/{TIER}"
MT_MAIN = MT["bases"][0]  # baselines, Table 3, the ablations: the paper's main base (WVU-7B) only
MT_TV = MT["chains"]["template"]
MT_WANDB = as_json(config["wandb"])
MT_TRAIN = as_json({**MT["train"], "dtype": config["dtype"]})
MT_CHAIN_GEN = as_json({**MT["chains"]["generation"], "dtype": config["dtype"], "seed": config["seed"]})
MT_PLAIN_GEN = as_json({**MT["baseline_generation"], "dtype": config["dtype"], "seed": config["seed"]})
# Table 4's architectures: paper.yaml rows with `table: table4` (mote first, always), then enabled row folders
MT_ARCH_ROWS = {r.name: r for r in enabled_rows("mote", ["mote", *(a for a in MT["archs"] if a != "mote")],
                                                config["row_dirs"], table="table4")}
MT_ARCHS = list(MT_ARCH_ROWS)
MT_ARCH_RE = "|".join(map(re.escape, MT_ARCHS + ["mote_explicit"]))
MT_JB = MT["jailbreak"]  # MoTE's own jailbreak pool (the shared one has 1 template per request: no goodness@0.1)
MT_SAFETY = f"{MT_R}/data/jailbreak/manifest.json" if MT_JB else []
MT_FIG6 = [f"{m}-{b}" for m in MT["fig6"]["modes"] for b in MT["fig6"]["budgets"]]
MT_CARD = f"results/judges/{MT['judge']}.json"  # rule judge_card (evals/shared.smk)


def mt_checked(row):
    """A row's builder options against its builder's signature, at start (a typo fails here, naming row.yaml)."""
    from alignrepro.errors import UserError
    from alignrepro.methods.mote.baselines import bind_options

    try:
        bind_options(row.load("data"), row.spec.get("options") or {})
    except UserError as e:
        raise UserError(f"{row.source}: row {row.name!r} field 'options': {e}") from e
    return row


# Table 1's baselines: the manifest's rows that `mote.baselines` names, then every enabled row folder
# (alignrepro.rows); each is checked now (fields, builder, options), so a row that cannot be built fails before any job.
MT_ROWS = {r.name: mt_checked(r) for r in enabled_rows("mote", MT["baselines"], config["row_dirs"])}
MT_ROW_RE = "|".join(map(re.escape, MT_ROWS)) or "(?!)"  # (?!): no row, no match


def mt_row_json(name, *fields):
    """The part of a row a job depends on, through params: a changed builder or options reruns the row's data,
    a changed trainer setting its training only, a changed label only the tables."""
    row = MT_ROWS[name].public()
    return as_json({k: row[k] for k in ("name", *fields) if k in row})


def mt_train_cfg(name):
    """The run's LoRA budget (every baseline trains with MoTE's), plus mote.dpo for DPO rows only."""
    cfg = {"train": MT["train"]["train"], "lora": MT["train"]["lora"], "dtype": config["dtype"]}
    if MT_ROWS[name].spec["trainer"] == "trl:DPOTrainer":
        cfg["dpo"] = MT["dpo"]
    return as_json(cfg)


def mt_infer_args(g):
    step = f"--step-max-tokens {g['step_max_tokens']} " if g.get("step_max_tokens") else ""
    step += f"--max-batch-tokens {g['max_batch_tokens']} " if g.get("max_batch_tokens") else ""
    return (f"{step}--batch-size {g['batch_size']} --temperature {g.get('temperature', 0.0)} "
            f"--seed {config['seed']} --dtype {config['dtype']}")


MT_INFER = mt_infer_args(MT["generation"])


def mt_table1_systems(base):
    """Table 1 rows reproduced at this tier: MoTE on every base, the baselines on the main base."""
    systems = {"MoTE": f"{MT_R}/{base}/answers/mote/mote.jsonl"}
    if base == MT_MAIN:
        systems |= {f"baseline_{b}": f"{MT_R}/{base}/answers/baseline/{b}.jsonl" for b in MT_ROWS}
    return systems


# Scheduling only (no output changes): the training paths (chains/baseline data -> train -> answers) start first and
# the prompting rows fill idle cores; without it the last baseline's data ran late and left a 6-minute one-core tail
# at tiny (measured: idle core time ~200 s -> ~100 s). The eval prompts are a 1-second job every answer step waits on.
MT_PRIORITY = {
    "mote_eval_prompts": 3,
    "mote_chains": 3,
    "mote_baseline_data": 3,
    "mote_train": 2,
    "mote_train_baseline": 2,
    "mote_infer": 1,
    "mote_generate_baseline": 1,
}


def mt_group_systems(base, group):
    if group == "table1":
        return mt_table1_systems(base)
    if group == "table3":
        return {t: f"{MT_R}/{base}/answers/prompting/{t}.jsonl" for t in MT["prompting"]}
    if group == "table4":
        return {a: f"{MT_R}/{base}/answers/mote/{a}.jsonl" for a in MT_ARCHS + ["mote_explicit"]}
    return {f: f"{MT_R}/{base}/answers/fig6/{f}.jsonl" for f in MT_FIG6}  # fig6


rule mote_jailbreak_prompts:
    """The jailbreak stand-in's pool: harmful requests x several jailbreak templates each (goodness@0.1 needs >= 2),
    built by the evaluation layer's loader (evals/safety/prompts.py); its requests are kept out of the train queries."""
    output:
        f"{MT_R}/data/jailbreak/manifest.json",
    params:
        n=MT_JB["n_requests"] if MT_JB else 0,
        k=MT_JB["templates_per_request"] if MT_JB else 0,
        seed=config["seed"],
    log:
        f"{MT_R}/logs/jailbreak_prompts.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.evals.safety.prompts --out-dir $(dirname {output}) --n-harmful 1 --n-benign 1 "
        "--n-jailbreak {params.n} --templates-per-request {params.k} --seed {params.seed} > {log} 2>&1"


rule mote_queries:
    """Train/test queries with published id lists: HH-RLHF (full) or the offline harmful/helpful pool (tiny, ci)."""
    input:
        jailbreak=MT_SAFETY,
    output:
        train=f"{MT_R}/data/train.jsonl",
        test=f"{MT_R}/data/test.jsonl",
        manifest=f"{MT_R}/data/manifest.json",
    params:
        data=lambda w, input: as_json({**MT["data"], **({"safety_prompts_dir": os.path.dirname(input.jailbreak),
                                                          "exclude_shared_eval_from_train": True}
                                                         if input.jailbreak else {})}),
        seed=config["seed"],
    log:
        f"{MT_R}/logs/queries.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.methods.mote.queries --data-json {params.data:q} --seed {params.seed} "
        "--out-dir $(dirname {output.train}) --tier {TIER} > {log} 2>&1"


rule mote_eval_prompts:
    """The Table 1 evaluation set: the test queries (harmful -> Harm, Harm-Help; helpful -> Help, over-refusal) plus
    MoTE's jailbreak pool (goodness@0.1 stand-in)."""
    input:
        test=f"{MT_R}/data/test.jsonl",
        safety=MT_SAFETY,
    output:
        f"{MT_R}/data/eval_prompts.jsonl",
    params:
        jb=lambda w, input: f"--jailbreak-dir $(dirname {input.safety})" if input.safety else "",
    priority: MT_PRIORITY["mote_eval_prompts"]
    log:
        f"{MT_R}/logs/eval_prompts.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.methods.mote.evaluate prompts --test {input.test} {params.jb} --tier {TIER} "
        "--out {output} > {log} 2>&1"


rule mote_chains:
    """AlignCoT chains written by the base model itself (self-alignment), one batched call per step."""
    input:
        model="results/models/{base}/model.json",
        queries=f"{MT_R}/data/train.jsonl",
    output:
        f"{MT_R}/{{base}}/chains/{MT_TV}.jsonl",
    params:
        gen=MT_CHAIN_GEN,
    log:
        f"{MT_R}/logs/chains_{{base}}.log",
    benchmark:
        f"{MT_R}/benchmarks/chains_{{base}}.tsv"
    threads: config["threads"]
    priority: MT_PRIORITY["mote_chains"]
    resources: **res("infer")
    shell:
        "{PY} -m alignrepro.methods.mote.chains --model $(dirname {input.model}) --queries {input.queries} "
        "--template {MT_TV} --gen-json {params.gen:q} --tier {TIER} --out {output} > {log} 2>&1"


rule mote_self_bleu:
    input:
        f"{MT_R}/{{base}}/chains/{MT_TV}.jsonl",
    output:
        f"{MT_R}/{{base}}/chains/{MT_TV}.self_bleu.json",
    params:
        mh=f"--max-hypotheses {MT['self_bleu']['max_hypotheses']}" if MT["self_bleu"]["max_hypotheses"] else "",
        seed=config["seed"],
    log:
        f"{MT_R}/logs/self_bleu_{{base}}.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.methods.mote.self_bleu --chains {input} {params.mh} --seed {params.seed} --tier {TIER} "
        "--out {output} > {log} 2>&1"


rule mote_baseline_data:
    """A Table 1 baseline's training data, generated by the same base model on the same train queries."""
    input:
        model="results/models/{base}/model.json",
        queries=f"{MT_R}/data/train.jsonl",
    output:
        f"{MT_R}/{{base}}/baselines/{{baseline}}.jsonl",
    wildcard_constraints:
        baseline=MT_ROW_RE,
    params:
        gen=MT_PLAIN_GEN,
        row=lambda w: mt_row_json(w.baseline, "data", "options", "folder"),
    log:
        f"{MT_R}/logs/baseline_data_{{base}}_{{baseline}}.log",
    benchmark:
        f"{MT_R}/benchmarks/baseline_data_{{base}}_{{baseline}}.tsv"
    threads: config["threads"]
    priority: MT_PRIORITY["mote_baseline_data"]
    resources: **res("infer")
    shell:
        "{PY} -m alignrepro.methods.mote.baselines {wildcards.baseline} --row-json {params.row:q} "
        "--model $(dirname {input.model}) --queries {input.queries} --gen-json {params.gen:q} --tier {TIER} "
        "--out {output} > {log} 2>&1"


rule mote_train:
    """MoTE and the Table 4 architectures on the same chains; mote_explicit = MoTE on the explicit extra datasets
    (Table 6's reference: no mask trick)."""
    input:
        base="results/models/{base}/model.json",
        chains=f"{MT_R}/{{base}}/chains/{MT_TV}.jsonl",
    output:
        f"{MT_R}/{{base}}/models/{{arch}}/model.json",
    wildcard_constraints:
        arch=MT_ARCH_RE,
    params:
        arch=lambda w: "mote" if w.arch == "mote_explicit" else w.arch,
        explicit=lambda w: "--explicit-datasets" if w.arch == "mote_explicit" else "",
        # the row's training fields (a changed label or note reruns only the tables)
        row=lambda w: as_json({k: v for k, v in MT_ARCH_ROWS["mote" if w.arch == "mote_explicit" else w.arch]
                               .public().items() if k not in ("label", "note", "folder")}),
        name=lambda w: f"mote-{TIER}-{w.base}-{w.arch}",
        cfg=MT_TRAIN,
    log:
        f"{MT_R}/logs/train_{{base}}_{{arch}}.log",
    benchmark:
        f"{MT_R}/benchmarks/train_{{base}}_{{arch}}.tsv"
    threads: config["threads"]
    priority: MT_PRIORITY["mote_train"]
    resources: **res("train")
    shell:
        "{PY} -m alignrepro.methods.mote.train --arch {params.arch} --arch-json {params.row:q} {params.explicit} "
        "--base $(dirname {input.base}) "
        "--chains {input.chains} --config-json {params.cfg:q} --wandb-json {MT_WANDB:q} --tier {TIER} "
        "--name {params.name} --out $(dirname {output}) > {log} 2>&1"


rule mote_train_baseline:
    """A baseline row with its trainer: SFT, Critique-Revise, Mistake Analysis (LoRA SFT on their files) and RLCD
    (LoRA DPO on its contrast pairs), each with the same LoRA, epochs, learning rate and batch as MoTE."""
    input:
        base="results/models/{base}/model.json",
        data=f"{MT_R}/{{base}}/baselines/{{baseline}}.jsonl",
    output:
        f"{MT_R}/{{base}}/models/baseline_{{baseline}}/model.json",
    wildcard_constraints:
        baseline=MT_ROW_RE,
    params:
        name=lambda w: f"mote-{TIER}-{w.base}-baseline-{w.baseline}",
        cfg=lambda w: mt_train_cfg(w.baseline),
        row=lambda w: mt_row_json(w.baseline, "data", "trainer", "config"),
    log:
        f"{MT_R}/logs/train_{{base}}_baseline_{{baseline}}.log",
    benchmark:
        f"{MT_R}/benchmarks/train_{{base}}_baseline_{{baseline}}.tsv"
    threads: config["threads"]
    priority: MT_PRIORITY["mote_train_baseline"]
    resources: **res("train")
    shell:
        "{PY} -m alignrepro.methods.mote.train_baselines --method {wildcards.baseline} --base $(dirname {input.base}) "
        "--data {input.data} --config-json {params.cfg:q} --row-json {params.row:q} --wandb-json {MT_WANDB:q} "
        "--tier {TIER} --name {params.name} --out $(dirname {output}) > {log} 2>&1"


rule mote_infer:
    """Adaptive step decoding of a train.py model (MoTE answers the Table 1 set, the other archs the test queries)."""
    input:
        model=f"{MT_R}/{{base}}/models/{{arch}}/model.json",
        prompts=lambda w: f"{MT_R}/data/eval_prompts.jsonl" if w.arch == "mote" else f"{MT_R}/data/test.jsonl",
    output:
        f"{MT_R}/{{base}}/answers/mote/{{arch}}.jsonl",
    wildcard_constraints:
        arch=MT_ARCH_RE,
    params:
        budget=MT["generation"]["max_new_tokens"],
        infer=MT_INFER,
    log:
        f"{MT_R}/logs/infer_{{base}}_{{arch}}.log",
    benchmark:
        f"{MT_R}/benchmarks/infer_{{base}}_{{arch}}.tsv"
    threads: config["threads"]
    priority: MT_PRIORITY["mote_infer"]
    resources: **res("infer")
    shell:
        "{PY} -m alignrepro.methods.mote.infer --model $(dirname {input.model}) --prompts {input.prompts} "
        "--mode adaptive --max-new-tokens {params.budget} {params.infer} --tier {TIER} "
        "--out {output} > {log} 2>&1"


rule mote_infer_fig6:
    """Fig. 6: MoTE's fixed-length modes and adaptive mode at a given output-token budget."""
    input:
        model=f"{MT_R}/{{base}}/models/mote/model.json",
        prompts=f"{MT_R}/data/test.jsonl",
    output:
        f"{MT_R}/{{base}}/answers/fig6/{{mode}}-{{budget}}.jsonl",
    wildcard_constraints:
        mode="adaptive|q_a|q_ana_a|q_ana_guid_a",
        budget=r"\d+",
    params:
        infer=MT_INFER,
    log:
        f"{MT_R}/logs/fig6_{{base}}_{{mode}}-{{budget}}.log",
    threads: config["threads"]
    resources: **res("infer")
    shell:
        "{PY} -m alignrepro.methods.mote.infer --model $(dirname {input.model}) --prompts {input.prompts} "
        "--mode {wildcards.mode} --max-new-tokens {wildcards.budget} {params.infer} --tier {TIER} --out {output} "
        "> {log} 2>&1"


rule mote_generate_baseline:
    """A LoRA baseline answers the Table 1 set through the engine's plain generation (chat template)."""
    input:
        model=f"{MT_R}/{{base}}/models/baseline_{{baseline}}/model.json",
        prompts=f"{MT_R}/data/eval_prompts.jsonl",
    output:
        f"{MT_R}/{{base}}/answers/baseline/{{baseline}}.jsonl",
    params:
        gen=MT_PLAIN_GEN,
    log:
        f"{MT_R}/logs/generate_{{base}}_{{baseline}}.log",
    benchmark:
        f"{MT_R}/benchmarks/generate_{{base}}_{{baseline}}.tsv"
    threads: config["threads"]
    priority: MT_PRIORITY["mote_generate_baseline"]
    resources: **res("infer")
    shell:
        "{PY} -m alignrepro.methods.mote.evaluate generate --model $(dirname {input.model}) --prompts {input.prompts} "
        "--gen-json {params.gen:q} --tier {TIER} --out {output} > {log} 2>&1"


rule mote_prompting:
    """Table 3: the base model with a prompting template only (no training)."""
    input:
        model="results/models/{base}/model.json",
        queries=f"{MT_R}/data/test.jsonl",
    output:
        f"{MT_R}/{{base}}/answers/prompting/{{template}}.jsonl",
    params:
        gen=MT_PLAIN_GEN,
    log:
        f"{MT_R}/logs/prompting_{{base}}_{{template}}.log",
    benchmark:
        f"{MT_R}/benchmarks/prompting_{{base}}_{{template}}.tsv"
    threads: config["threads"]
    resources: **res("infer")
    shell:
        "{PY} -m alignrepro.methods.mote.prompting --model $(dirname {input.model}) --queries {input.queries} "
        "--template {wildcards.template} --gen-json {params.gen:q} --tier {TIER} --out {output} > {log} 2>&1"


rule mote_evaluate:
    """Help / Harm / Harm-Help (+ over-refusal, goodness@0.1 on Table 1) of every system of one table, one judge
    load; every grade goes through the shared judgment cache."""
    input:
        answers=lambda w: list(mt_group_systems(w.base, w.group).values()),
        prompts=lambda w: f"{MT_R}/data/eval_prompts.jsonl" if w.group == "table1" else f"{MT_R}/data/test.jsonl",
        judge=lambda w: judge_inputs(MT["judge"]),  # judge_inputs / judge_spec: evals/shared.smk
    output:
        f"{MT_R}/{{base}}/eval/{{group}}.json",
    wildcard_constraints:
        group="table1|table3|table4|fig6",
    params:
        systems=lambda w: " ".join(f"{k}={v}" for k, v in mt_group_systems(w.base, w.group).items()),
        judge=lambda w: as_json(judge_spec(MT["judge"])),
        judge_name=MT["judge"],
        threshold=MT["harmless_threshold"],
        seed=config["seed"],
    log:
        f"{MT_R}/logs/evaluate_{{base}}_{{group}}.log",
    benchmark:
        f"{MT_R}/benchmarks/evaluate_{{base}}_{{group}}.tsv"
    threads: config["threads"]
    resources: **res_judge("judge")
    shell:
        "{PY} -m alignrepro.methods.mote.evaluate score --prompts {input.prompts} --system {params.systems} "
        "--judge-config {params.judge:q} --judge-name {params.judge_name} --harmless-threshold {params.threshold} "
        "--cache results/judge_cache.sqlite --seed {params.seed} --tier {TIER} --out {output} > {log} 2>&1"


rule mote_efficiency:
    """Table 6: measured FLOPs and time of the mask trick vs the explicit extra datasets."""
    input:
        mask=f"{MT_R}/{{base}}/models/mote/model.json",
        explicit=f"{MT_R}/{{base}}/models/mote_explicit/model.json",
        chains=f"{MT_R}/{{base}}/chains/{MT_TV}.jsonl",
    output:
        f"{MT_R}/{{base}}/table6_cost.json",
    log:
        f"{MT_R}/logs/efficiency_{{base}}.log",
    threads: config["threads"]
    resources: **res("cpu_model")
    shell:
        "{PY} -m alignrepro.methods.mote.efficiency --mask-model $(dirname {input.mask}) "
        "--explicit-model $(dirname {input.explicit}) --chains {input.chains} --tier {TIER} --out {output} > {log} 2>&1"


MT_SPEC = as_json({"tier": TIER, "seed": config["seed"], "bases": MT["bases"], "main": MT_MAIN, "root": MT_R,
                   "judge": MT["judge"], "template": MT_TV,
                   "baselines": [{"name": n, "label": r.label, "trainer": r.spec["trainer"], "note": r.spec.get("note")}
                                 for n, r in MT_ROWS.items()],
                   "prompting": MT["prompting"], "fig6": MT["fig6"],
                   "archs": [{"name": n, "label": r.label, "note": r.spec.get("note")}
                             for n, r in MT_ARCH_ROWS.items()]})


rule mote_tables:
    """Tables 1, 2 and 3: reproduced rows beside the reported ones, with the judge card; summary printed."""
    input:
        table1=[f"{MT_R}/{b}/eval/table1.json" for b in MT["bases"]],
        table3=f"{MT_R}/{MT_MAIN}/eval/table3.json",
        self_bleu=[f"{MT_R}/{b}/chains/{MT_TV}.self_bleu.json" for b in MT["bases"]],
        manifest=f"{MT_R}/data/manifest.json",
        reported=os.path.join(workflow.basedir, "methods/mote/reported.yaml"),
        card=MT_CARD,
    output:
        f"{MT_R}/tables/tables.md",
        f"{MT_R}/tables/tables.csv",
        summary=f"{MT_R}/tables/summary.md",
        # `snakemake --report`: the tables as an HTML page, and the tier/judge facts the caption includes
        html=report(f"{MT_R}/tables/tables.html", caption="report/tables.rst", category="MoTE",
                    subcategory="tables", labels={"item": "Tables 1, 2, 3"}),
        facts=f"{MT_R}/tables/mote_tables.facts.rst",
    params:
        spec=MT_SPEC,
    log:
        f"{MT_R}/logs/tables.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.methods.mote.aggregate tables --spec-json {params.spec:q} --reported {input.reported} "
        "--card {input.card} --wandb-json {MT_WANDB:q} --out-dir {MT_R}/tables > {log} 2>&1 "
        "&& {PY} -m alignrepro.report_pages --tier {TIER} --cards {input.card} --facts {output.facts} "
        "--page {output[0]} {output.html} >> {log} 2>&1 && cat {output.summary}"


rule mote_ablations:
    """Table 4 (architectures), Table 6 (training cost of the mask trick) and Fig. 6 (Harm vs token budget)."""
    input:
        table4=f"{MT_R}/{MT_MAIN}/eval/table4.json",
        fig6=f"{MT_R}/{MT_MAIN}/eval/fig6.json",
        cost=f"{MT_R}/{MT_MAIN}/table6_cost.json",
        reported=os.path.join(workflow.basedir, "methods/mote/reported.yaml"),
        card=MT_CARD,
    output:
        f"{MT_R}/tables/ablations.md",
        f"{MT_R}/tables/ablations.csv",
        report(f"{MT_R}/tables/fig6_harm_vs_budget.png", caption="report/fig6_png.rst", category="MoTE",
               subcategory="plots", labels={"item": "Fig. 6: Harm vs token budget"}),
        report(f"{MT_R}/tables/table4_architectures.png", caption="report/table4_png.rst", category="MoTE",
               subcategory="plots", labels={"item": "Table 4: architectures"}),
        summary=f"{MT_R}/tables/ablations_summary.md",
        html=report(f"{MT_R}/tables/ablations.html", caption="report/ablations.rst", category="MoTE",
                    subcategory="tables", labels={"item": "Tables 4, 6 and Fig. 6"}),
        facts=f"{MT_R}/tables/mote_ablations.facts.rst",
    params:
        spec=MT_SPEC,
    log:
        f"{MT_R}/logs/ablations.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.methods.mote.aggregate ablations --spec-json {params.spec:q} --reported {input.reported} "
        "--card {input.card} --wandb-json {MT_WANDB:q} --out-dir {MT_R}/tables > {log} 2>&1 "
        "&& {PY} -m alignrepro.report_pages --tier {TIER} --cards {input.card} --facts {output.facts} "
        "--page {output[0]} {output.html} >> {log} 2>&1 && cat {output.summary}"


# On the shared leaderboard: baselines (plain LoRA, kind "lora") and train.py models (kind "mote": the shared layer
# hands them to methods/mote/backend.py — adaptive step decoding, the answer within the shared budget, reasoning
# steps on top, each <= mote.generation.step_max_tokens). Only when MoTE is one of the configured papers. A user's
# enabled row folder joins by itself (as every CUT row does): adding a row is one folder, with no list to edit.
MT_SHARED = list(dict.fromkeys([*MT["shared_evals"], *(n for n, r in MT_ROWS.items() if r.folder is not None)]))


def mt_check_shared_evals():
    """mote.shared_evals names rows this run trains: a row folder's too, so the schema cannot list them. A typo
    names the closest row; a row the run does not train says how to train it."""
    import difflib

    from alignrepro.config import ConfigError
    from alignrepro.rows import paper_rows

    run, known = [*MT_ROWS, *MT_ARCHS], paper_rows("mote", config["row_dirs"])
    for name in MT["shared_evals"]:
        if name in run:
            continue
        row = known.get(name)
        if row is not None:
            how = ("enable it in " + str(row.source) if row.folder is not None and not row.enabled
                   else "add it to mote." + ("archs" if row.table == "table4" else "baselines"))
            why = f"is a row this run does not train ({how})"
        else:
            close = difflib.get_close_matches(name, run + [n for n in known if n not in run], n=1)
            why = "is no row of MoTE" + (f" (did you mean {close[0]!r}?)" if close else "")
        raise ConfigError(f"config key 'mote.shared_evals': {name!r} {why}. The run's baselines: "
                          f"{', '.join(MT_ROWS) or 'none'}; its architectures: {', '.join(MT_ARCHS)}")


mt_check_shared_evals()
if "mote" in config["papers"]:
    for _b in MT_SHARED:
        if _b in MT_ROWS:
            register_shared_model(f"mote/{_b}", f"{MT_R}/{MT_MAIN}/models/baseline_{_b}", MT_MAIN, "mote", _b)
        elif _b in MT_ARCHS:
            _step = MT["generation"].get("step_max_tokens")
            register_shared_model(
                f"mote/{_b}", f"{MT_R}/{MT_MAIN}/models/{_b}", MT_MAIN, "mote", _b,
                generation={"step_max_tokens": _step} if _step else None,
                note=(f"adaptive step decoding: the answer within the shared budget, reasoning steps on top "
                      f"(each <= {_step or 'the answer budget'} tokens); only the answer is judged"),
            )

PAPER_TARGETS["mote"] = [rules.mote_tables.output] + ([rules.mote_ablations.output] if MT["ablations_in_default"] else [])
