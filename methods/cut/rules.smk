# CUT ("Reasons to Reject?", arXiv 2312.14591): pools → responses → judgments → train (CUT + baselines) →
# generate → evals (shared rules in evals/) → tables. Paths carry the tier: results/cut/<tier>/...
CUT = config["cut"]
CUT_R = f"results/cut/{TIER}"
CUT_ITERS = range(1, CUT["data"]["iterations"] + 1)
CUT_GEN = as_json({**CUT["generation"], "dtype": config["dtype"]})
CUT_WANDB = as_json(config["wandb"])
# Table 2's rows: the manifest's rows that `cut.methods` names, then every enabled row folder (alignrepro.rows);
# each is checked now (fields, builders), so a row that cannot be built fails before any job runs.
CUT_ROWS = {r.name: r for r in enabled_rows("cut", CUT["methods"], config["row_dirs"])}
# The critics, by name (evals.judges or built-in, checked at start to fit $defs critic), as the judge step reads them.
CUT_CRITIC = {group: named_spec(JUDGES, name, config["dtype"]) for group, name in CUT["critic"].items()}


def cut_model_dir(base, model_id):
    """Folder of a model reference. At tiny/ci the offline table trains on iteration 1's triplets, so online
    iteration 1 *is* the offline CUT model (trained once)."""
    if model_id == "base":
        return f"results/models/{base}"
    if model_id == "cut_iter1" and CUT["data"]["offline"] == "online_iter1":
        return f"{CUT_R}/models/{base}/cut"
    return f"{CUT_R}/models/{base}/{model_id}"


def cut_model_ids(base):
    ids = ["base"] + list(CUT_ROWS)
    if base == CUT["online_base"]:
        # An aliased iteration 1 (tiny/ci) is the offline CUT model: evaluated once, reported in both tables.
        first = 2 if CUT["data"]["offline"] == "online_iter1" else 1
        ids += [f"cut_iter{k}" for k in range(first, CUT["data"]["iterations"] + 1)]
    return ids


def cut_seed_ids(base):
    """Table 2's rows trained again with the run's extra seeds (config `seeds`): same data, same evaluation items, so
    the rows stay paired; the online iterations and the base model keep one seed."""
    return [f"{m}-seed{s}" for s in SEEDS[1:] for m in CUT_ROWS]


def cut_offline_triplets():
    if CUT["data"]["offline"] == "online_iter1":
        return f"{CUT_R}/online/iter1/triplets.jsonl"
    return f"{CUT_R}/offline/triplets.jsonl"


def cut_train_cfg(method, seed=None):
    """Only the settings a row depends on, so that changing one row's hyper-parameter reruns only it."""
    trainer = CUT_ROWS[method].spec["trainer"]
    c = CUT["cut"] if trainer == "cut" else {k: CUT["cut"][k] for k in ("align_p_ratio", "keep_error_judgments")}
    train = CUT["train"] if seed is None else {**CUT["train"], "seed": seed}
    cfg = {"train": train, "cut": c, "dtype": config["dtype"]}
    if trainer == "trl:DPOTrainer":
        cfg["dpo"] = CUT["dpo"]
    return cfg


rule cut_pool:
    output:
        pools=expand(f"{CUT_R}/data/pool_iter{{k}}.jsonl", k=CUT_ITERS),
        eval=f"{CUT_R}/data/eval_prompts.jsonl",
    params:
        data=as_json(CUT["data"]),
        seed=config["seed"],
    log:
        f"{CUT_R}/logs/pool.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.methods.cut.data_steps pool --data-json {params.data:q} --seed {params.seed} "
        "--out-dir {CUT_R}/data > {log} 2>&1"


rule cut_respond:
    """The current policy answers iteration k's instructions (k=1: the base model)."""
    input:
        model=lambda w: f"{cut_model_dir(CUT['online_base'], 'base' if int(w.k) == 1 else f'cut_iter{int(w.k) - 1}')}/model.json",
        prompts=f"{CUT_R}/data/pool_iter{{k}}.jsonl",
    output:
        f"{CUT_R}/online/iter{{k}}/responses.jsonl",
    params:
        gen=CUT_GEN,
    log:
        f"{CUT_R}/logs/respond_iter{{k}}.log",
    benchmark:
        f"{CUT_R}/benchmarks/respond_iter{{k}}.tsv"
    threads: config["threads"]
    resources: **res("infer")
    shell:
        "{PY} -m alignrepro.generation --model $(dirname {input.model}) --prompts {input.prompts} --out {output} "
        "--spec-json {params.gen:q} --tier {TIER} > {log} 2>&1"


rule cut_judge:
    input:
        responses=f"{CUT_R}/online/iter{{k}}/responses.jsonl",
        critic_models=[f"results/models/{s['model']}/model.json" for s in CUT_CRITIC.values() if s["backend"] == "local"],
    output:
        f"{CUT_R}/online/iter{{k}}/triplets.jsonl",
    params:
        critic=as_json(CUT_CRITIC),
    log:
        f"{CUT_R}/logs/judge_iter{{k}}.log",
    benchmark:
        f"{CUT_R}/benchmarks/judge_iter{{k}}.tsv"
    threads: config["threads"]
    resources: **res_judge("critic_models")
    shell:
        "{PY} -m alignrepro.methods.cut.data_steps judge --responses {input.responses} --critic-json {params.critic:q} "
        "--tier {TIER} --out {output} > {log} 2>&1"


rule cut_shepherd:
    """Full tier: the offline Table-2 data, Shepherd's 1317 human critiques (all negatives)."""
    output:
        f"{CUT_R}/offline/triplets.jsonl",
    params:
        path=CUT["data"].get("hub", {}).get("shepherd", {}).get("path", ""),
    log:
        f"{CUT_R}/logs/shepherd.log",
    resources: **res("cpu")
    shell:
        "{PY} -c 'import sys; from alignrepro.data.hub import load_shepherd; from alignrepro.data import save_records; "
        "save_records(sys.argv[2], load_shepherd(sys.argv[1]))' {params.path:q} {output} > {log} 2>&1"


rule cut_refine_prompts:
    input:
        cut_offline_triplets(),
    output:
        f"{CUT_R}/offline/refine_prompts.jsonl",
    log:
        f"{CUT_R}/logs/refine_prompts.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.methods.cut.data_steps refine --triplets {input} --out {output} > {log} 2>&1"


rule cut_refine:
    """ILF: the base model writes ŷ = refine(x, y, j) for every negative triplet."""
    input:
        model="results/models/{base}/model.json",
        prompts=f"{CUT_R}/offline/refine_prompts.jsonl",
    output:
        f"{CUT_R}/offline/{{base}}/refinements.jsonl",
    params:
        gen=as_json({**CUT["generation"], "template": "raw"}),
    log:
        f"{CUT_R}/logs/refine_{{base}}.log",
    benchmark:
        f"{CUT_R}/benchmarks/refine_{{base}}.tsv"
    threads: config["threads"]
    resources: **res("infer")
    shell:
        "{PY} -m alignrepro.generation --model $(dirname {input.model}) --prompts {input.prompts} --out {output} "
        "--spec-json {params.gen:q} --tier {TIER} > {log} 2>&1"


def cut_row_of(model_id):
    """The row a model is trained as: online iterations (cut_iter<k>) are CUT; "<row>-seed<s>" is that row."""
    return "cut" if re.fullmatch(r"cut_iter\d+", model_id) else re.sub(r"-seed\d+$", "", model_id)


def cut_seed_of(model_id):
    """The training seed of an extra-seed model ("<row>-seed<s>"), else None (the run's seed)."""
    m = re.search(r"-seed(\d+)$", model_id)
    return int(m.group(1)) if m else None


def cut_train_inputs(w):
    if w.method.startswith("cut_iter"):
        k = int(w.method.removeprefix("cut_iter"))
        start = cut_model_dir(w.base, "base" if k == 1 else f"cut_iter{k - 1}")
        return {"model": f"{start}/model.json", "triplets": f"{CUT_R}/online/iter{k}/triplets.jsonl"}
    inputs = {"model": f"results/models/{w.base}/model.json", "triplets": cut_offline_triplets()}
    if CUT_ROWS[cut_row_of(w.method)].spec.get("needs_refinements"):
        inputs["refinements"] = f"{CUT_R}/offline/{w.base}/refinements.jsonl"
    return inputs


rule cut_train:
    input:
        unpack(cut_train_inputs),
    output:
        f"{CUT_R}/models/{{base}}/{{method}}/model.json",
    wildcard_constraints:
        method="(" + "|".join(map(re.escape, CUT_ROWS)) + r")(-seed\d+)?|cut_iter\d+",
    params:
        cfg=lambda w: as_json(cut_train_cfg(cut_row_of(w.method), cut_seed_of(w.method))),
        method=lambda w: cut_row_of(w.method),
        row=lambda w: as_json(CUT_ROWS[cut_row_of(w.method)].public()),
        refinements=lambda w, input: f"--refinements {input.refinements}" if "refinements" in input.keys() else "",
    log:
        f"{CUT_R}/logs/train_{{base}}_{{method}}.log",
    benchmark:
        f"{CUT_R}/benchmarks/train_{{base}}_{{method}}.tsv"
    threads: config["threads"]
    resources: **res("train")
    shell:
        "{PY} -m alignrepro.methods.cut.train --method {params.method} --base-model $(dirname {input.model}) "
        "--triplets {input.triplets} {params.refinements} --config-json {params.cfg:q} --row-json {params.row:q} "
        "--wandb-json {CUT_WANDB:q} "
        "--name cut-{TIER}-{wildcards.base}-{wildcards.method} --tier {TIER} "
        "--out $(dirname {output}) > {log} 2>&1"


rule cut_generate:
    """Held-out evaluation prompts, one template for every model of the table (cut.md §7.11)."""
    input:
        model=lambda w: f"{cut_model_dir(w.base, w.model_id)}/model.json",
        prompts=f"{CUT_R}/data/eval_prompts.jsonl",
    output:
        f"results/cut/{TIER}/generations/{{base}}/{{model_id}}.jsonl",
    params:
        gen=CUT_GEN,
    log:
        f"{CUT_R}/logs/generate_{{base}}_{{model_id}}.log",
    benchmark:
        f"{CUT_R}/benchmarks/generate_{{base}}_{{model_id}}.tsv"
    threads: config["threads"]
    resources: **res("infer")
    shell:
        "{PY} -m alignrepro.generation --model $(dirname {input.model}) --prompts {input.prompts} --out {output} "
        "--spec-json {params.gen:q} --tier {TIER} > {log} 2>&1"


rule cut_reference:
    """Full tier: AlpacaEval 1's reference outputs (text-davinci-003) from the evaluation file."""
    input:
        f"{CUT_R}/data/eval_prompts.jsonl",
    output:
        f"{CUT_R}/data/eval_reference.jsonl",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.methods.cut.data_steps reference --eval-prompts {input} --out {output}"


EVAL_REFERENCE["cut"] = lambda base: (f"results/cut/{TIER}/generations/{base}/base.jsonl"
                                      if CUT["eval"]["reference"] == "base" else f"{CUT_R}/data/eval_reference.jsonl")
EVAL_JUDGE["cut"] = CUT["eval"]["judge"]  # group -> judge name (evals.judges or built-in; evals/shared.smk judge_spec)
CUT_CARDS = list(dict.fromkeys(CUT["eval"]["judge"].values()))  # every judge of a CUT number gets its card
CUT_EVALS = [f"{CUT_R}/eval/{bench}/{base}/{m}.json" for base in CUT["bases"]
             for m in cut_model_ids(base) + cut_seed_ids(base) for bench in ("accuracy", "winrate")]


def cut_shared_ids(base):
    """The models of `base` on the shared leaderboard: `cut.shared_evals` (all, or a list checked here against the
    run's models), plus every enabled row folder (a user's own row always joins the board)."""
    ids = [m for m in cut_model_ids(base) if m != "base"]  # the base is registered with its first trained model
    wanted = CUT["shared_evals"]
    if wanted == "all":
        return ids
    unknown = [m for m in wanted if not any(m in cut_model_ids(b) for b in CUT["bases"]) or m == "base"]
    if unknown:
        from alignrepro.config import ConfigError

        raise ConfigError(f"config key 'cut.shared_evals': {unknown} are not models of this run ({', '.join(ids)})")
    return [m for m in ids if m in wanted or (m in CUT_ROWS and CUT_ROWS[m].folder is not None)]


for _b in CUT["bases"]:
    for _m in cut_shared_ids(_b):
        register_shared_model(f"cut/{_m}" if len(CUT["bases"]) == 1 else f"cut/{_b}-{_m}", cut_model_dir(_b, _m),
                              _b, "cut", _m)
CUT_TRAINED = [f"{cut_model_dir(base, m)}/model.json" for base in CUT["bases"]
               for m in cut_model_ids(base) + cut_seed_ids(base) if m != "base"]


rule cut_tables:
    input:
        evals=CUT_EVALS,
        models=CUT_TRAINED,
        triplets=[cut_offline_triplets()] + [f"{CUT_R}/online/iter{k}/triplets.jsonl" for k in CUT_ITERS],
        reported=os.path.join(workflow.basedir, "methods/cut/reported.yaml"),
        # the leaderboard's cards (CARDS: evals/shared.smk), then CUT's own (same judge id: CUT's card is shown)
        cards=lambda w: [f"results/judges/{n}.json" for n in dict.fromkeys([*CARDS, *CUT_CARDS])],
    output:
        f"{CUT_R}/tables/table2_offline.md",
        f"{CUT_R}/tables/table2_offline.csv",
        f"{CUT_R}/tables/table6_online.md",
        f"{CUT_R}/tables/table6_online.csv",
        report(f"{CUT_R}/tables/cut_results.png", caption="report/cut_results.rst", category="CUT",
               subcategory="plots", labels={"item": "accuracy and win rate"}),
        f"{CUT_R}/tables/reported.md",
        summary=f"{CUT_R}/tables/summary.md",
        # `snakemake --report`: the tables as HTML pages, and the tier/judge facts the captions include
        table2=report(f"{CUT_R}/tables/table2_offline.html", caption="report/table2_offline.rst", category="CUT",
                      subcategory="tables", labels={"item": "Table 2 analogue (offline)"}),
        table6=report(f"{CUT_R}/tables/table6_online.html", caption="report/table6_online.rst", category="CUT",
                      subcategory="tables", labels={"item": "Table 6 analogue (online)"}),
        reported=report(f"{CUT_R}/tables/reported.html", caption="report/reported.rst", category="CUT",
                        subcategory="tables", labels={"item": "reported tables (as published)"}),
        facts=f"{CUT_R}/tables/cut_tables.facts.rst",
    params:
        spec=as_json({"tier": TIER, "seed": config["seed"], "seeds": SEEDS, "bases": CUT["bases"],
                      "online_base": CUT["online_base"],
                      "methods": list(CUT_ROWS), "iterations": CUT["data"]["iterations"],
                      "rows": {n: {"label": r.label, "objective": r.spec["objective"]} for n, r in CUT_ROWS.items()},
                      "offline": CUT["data"]["offline"], "root": CUT_R,
                      "model_dirs": {b: {m: cut_model_dir(b, m) for m in cut_model_ids(b) + cut_seed_ids(b)}
                                     for b in CUT["bases"]}}),
        cut_cards=[f"results/judges/{n}.json" for n in CUT_CARDS],  # the judges of CUT's numbers, for the captions
    log:
        f"{CUT_R}/logs/tables.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.methods.cut.aggregate --spec-json {params.spec:q} --reported {input.reported} "
        "--out-dir {CUT_R}/tables --cards {input.cards} --wandb-json {CUT_WANDB:q} > {log} 2>&1 "
        "&& {PY} -m alignrepro.report_pages --tier {TIER} --cards {params.cut_cards} --facts {output.facts} "
        "--page {output[0]} {output.table2} --page {output[2]} {output.table6} --page {output[5]} {output.reported} "
        ">> {log} 2>&1 && cat {output.summary}"


PAPER_TARGETS["cut"] = rules.cut_tables.output
