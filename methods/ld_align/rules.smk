# LD-Align ("Latent Distance Guided Alignment Training", arXiv 2404.06390): data → (SFT) → iteration 0 answers →
# guide model → per arm and iteration: pairs → latent distances → weights → weighted SPIN → the next answers;
# every model evaluated judge-free → tables. Paths carry the tier: results/ld_align/<tier>/...
LD = config["ld_align"]
LD_R = f"results/ld_align/{TIER}"
LD_WANDB = as_json(config["wandb"])
LD_T = LD["iterations"]
if len(LD["schedule"]) < LD_T:
    raise WorkflowError(f"config key 'ld_align.schedule': {len(LD['schedule'])} entries for {LD_T} iterations")
# The arms: rows of the main table (`ld_align.arms` + enabled row folders) and of the ablation table; each is
# checked now (fields, weight functions), so a row that cannot be built fails before any job runs.
LD_ARMS = {r.name: r for r in enabled_rows("ld_align", LD["arms"], config["row_dirs"])}
LD_ABLATIONS = {r.name: r for r in enabled_rows("ld_align", LD["ablations"], config["row_dirs"], table="ablations")}
LD_ROWS = {**LD_ARMS, **LD_ABLATIONS}
LD_ARM = "|".join(map(re.escape, LD_ROWS))  # the {arm} wildcard: a declared row, nothing else
LD_GEN = {**LD["generation"], "dtype": config["dtype"]}
LD_START = f"{LD_R}/models/sft" if LD["sft"] else f"results/models/{LD['base']}"
if LD["guide"]["encoder"] not in LD["guide"]["encoders"]:
    raise WorkflowError(f"config key 'ld_align.guide.encoder': {LD['guide']['encoder']!r} is not one of "
                        f"ld_align.guide.encoders ({', '.join(LD['guide']['encoders'])})")
LD_ENCODER = LD["guide"]["encoders"][LD["guide"]["encoder"]]


def ld_model(arm, t):
    return f"{LD_R}/models/{arm}/iter{t}"


def ld_policy(arm, t):
    """The model that starts iteration t (and is its reference): the start policy, then the previous iteration."""
    return LD_START if int(t) == 0 else ld_model(arm, int(t) - 1)


def ld_generations(arm, t):
    """The policy's answers that iteration t trains against (iteration 0's are shared by every arm)."""
    return f"{LD_R}/generations/iter0.jsonl" if int(t) == 0 else f"{LD_R}/generations/{arm}/iter{t}.jsonl"


def ld_uses_distance(arm):
    return LD_ROWS[arm].spec["weighting"] != "constant"


rule ld_data:
    output:
        train=f"{LD_R}/data/train.jsonl",
        heldout=f"{LD_R}/data/heldout.jsonl",
        sft=f"{LD_R}/data/sft.jsonl",
        verifiable=f"{LD_R}/data/verifiable_test.jsonl",
        meta=f"{LD_R}/data/data.json",
    params:
        data=as_json(LD["data"]),
        seed=config["seed"],
    log:
        f"{LD_R}/logs/data.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.methods.ld_align.data --data-json {params.data:q} --seed {params.seed} --tier {TIER} "
        "--out-dir {LD_R}/data > {log} 2>&1"


rule ld_sft:
    """tiny/ci: SFT of the base on disjoint real samples (the start policy of iteration 0)."""
    input:
        model=f"results/models/{LD['base']}/model.json",
        samples=rules.ld_data.output.sft,
    output:
        f"{LD_R}/models/sft/model.json",
    params:
        cfg=as_json({"train": (LD["sft"] or {}).get("train"), "lora": LD["train"]["lora"], "dtype": config["dtype"]}),
    log:
        f"{LD_R}/logs/sft.log",
    benchmark:
        f"{LD_R}/benchmarks/sft.tsv"
    threads: config["threads"]
    resources: **res("train")
    shell:
        "{PY} -m alignrepro.methods.ld_align.sft --base-model $(dirname {input.model}) --samples {input.samples} "
        "--config-json {params.cfg:q} --wandb-json {LD_WANDB:q} --name ld_align-{TIER}-sft --tier {TIER} "
        "--out $(dirname {output}) > {log} 2>&1"


rule ld_generate_first:
    """The start policy answers the training prompts (iteration 0's rejected side, shared by every arm) and the
    held-out prompts (the implicit-reward pairs)."""
    input:
        model=f"{LD_START}/model.json",
        prompts=lambda w: rules.ld_data.output.train if w.which == "iter0" else rules.ld_data.output.heldout,
    output:
        f"{LD_R}/generations/{{which}}.jsonl",
    wildcard_constraints:
        which="iter0|heldout_start",
    params:
        gen=as_json(LD_GEN),
    log:
        f"{LD_R}/logs/generate_{{which}}.log",
    benchmark:
        f"{LD_R}/benchmarks/generate_{{which}}.tsv"
    threads: config["threads"]
    resources: **res("infer")
    shell:
        "{PY} -m alignrepro.generation --model $(dirname {input.model}) --prompts {input.prompts} --out {output} "
        "--spec-json {params.gen:q} --tier {TIER} > {log} 2>&1"


rule ld_generate:
    """Iteration t >= 1: the arm's previous model answers the training prompts."""
    input:
        model=lambda w: f"{ld_policy(w.arm, w.t)}/model.json",
        prompts=rules.ld_data.output.train,
    output:
        f"{LD_R}/generations/{{arm}}/iter{{t}}.jsonl",
    wildcard_constraints:
        arm=LD_ARM,
        t=r"[1-9]\d*",
    params:
        gen=as_json(LD_GEN),
    log:
        f"{LD_R}/logs/generate_{{arm}}_iter{{t}}.log",
    benchmark:
        f"{LD_R}/benchmarks/generate_{{arm}}_iter{{t}}.tsv"
    threads: config["threads"]
    resources: **res("infer")
    shell:
        "{PY} -m alignrepro.generation --model $(dirname {input.model}) --prompts {input.prompts} --out {output} "
        "--spec-json {params.gen:q} --tier {TIER} > {log} 2>&1"


rule ld_guide_texts:
    input:
        train=rules.ld_data.output.train,
        sft=rules.ld_data.output.sft,
        generated=f"{LD_R}/generations/iter0.jsonl",
    output:
        f"{LD_R}/guide/texts.jsonl",
    params:
        which=",".join(LD["guide"]["data"]),
    log:
        f"{LD_R}/logs/guide_texts.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.methods.ld_align.weights texts --train {input.train} --sft {input.sft} "
        "--generations {input.generated} --which {params.which} --out {output} > {log} 2>&1"


rule ld_guide:
    """The guide model: encoder (frozen) + trained projection as phi, the frozen start policy read through soft-prefix
    vectors as psi; trained once by reconstruction, then frozen for every iteration and arm."""
    input:
        decoder=f"{LD_START}/model.json",
        texts=rules.ld_guide_texts.output[0],
    output:
        f"{LD_R}/guide/guide.json",
    params:
        encoder=as_json(LD_ENCODER),
        cfg=as_json({**{k: v for k, v in LD["guide"].items() if k not in ("encoder", "encoders", "data")},
                     "dtype": config["dtype"]}),
        seed=config["seed"],
    log:
        f"{LD_R}/logs/guide.log",
    benchmark:
        f"{LD_R}/benchmarks/guide.tsv"
    threads: config["threads"]
    resources: **res("train")
    shell:
        "{PY} -m alignrepro.methods.ld_align.guide --threads {threads} train --decoder $(dirname {input.decoder}) --texts {input.texts} "
        "--encoder-json {params.encoder:q} --config-json {params.cfg:q} --out $(dirname {output}) --tier {TIER} "
        "--seed {params.seed} > {log} 2>&1"


def ld_pair_generations(w):
    """TAG=FILE of the answers iteration t trains against: iteration t's, and t-1's when mixing (SPIN)."""
    t = int(w.t)
    ts = [t - 1, t] if LD["mix_previous"] and t >= 1 else [t]
    return {f"g{k}": ld_generations(w.arm, k) for k in ts}


rule ld_pairs:
    input:
        train=rules.ld_data.output.train,
        generations=lambda w: list(ld_pair_generations(w).values()),
    output:
        f"{LD_R}/pairs/{{arm}}/iter{{t}}.jsonl",
    wildcard_constraints:
        arm=LD_ARM,
        t=r"\d+",
    params:
        gens=lambda w: " ".join(f"{tag}={path}" for tag, path in ld_pair_generations(w).items()),
    log:
        f"{LD_R}/logs/pairs_{{arm}}_iter{{t}}.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.methods.ld_align.weights pairs --train {input.train} --generations {params.gens} "
        "--out {output} > {log} 2>&1"


def ld_latent_args(w):
    """guide: the trained phi; raw: the frozen encoder without the trained projection; policy: the policy's own
    mean-pooled hidden states. The last two read answers cut to the same token budget as the guide's."""
    latent = LD_ROWS[w.arm].spec["latent"]
    if latent == "guide":
        return f"--guide {LD_R}/guide"
    enc = LD_ENCODER
    spec = {**enc, "source": "raw"} if latent == "raw" and enc["source"] == "minilm_wheel" else enc
    spec = {"source": "policy"} if latent == "policy" else spec
    policy = LD_START if latent == "raw" else ld_policy(w.arm, w.t)
    return (f"--encoder-json {shlex.quote(as_json(spec))} --policy {policy} "
            f"--max-response-tokens {LD['guide']['max_response_tokens']}")


rule ld_distances:
    input:
        guide=rules.ld_guide.output[0],
        pairs=f"{LD_R}/pairs/{{arm}}/iter{{t}}.jsonl",
        policy=lambda w: [] if LD_ROWS[w.arm].spec.get("latent") == "guide" else (
            f"{LD_START if LD_ROWS[w.arm].spec['latent'] == 'raw' else ld_policy(w.arm, w.t)}/model.json"),
    output:
        f"{LD_R}/distances/{{arm}}/iter{{t}}.jsonl",
    wildcard_constraints:
        arm=LD_ARM,
        t=r"\d+",
    params:
        latent=ld_latent_args,
    log:
        f"{LD_R}/logs/distances_{{arm}}_iter{{t}}.log",
    threads: config["threads"]
    resources: **res("infer")
    shell:
        "{PY} -m alignrepro.methods.ld_align.guide --threads {threads} distances {params.latent} --pairs {input.pairs} "
        "--out {output} > {log} 2>&1"


rule ld_weights:
    input:
        train=rules.ld_data.output.train,
        pairs=f"{LD_R}/pairs/{{arm}}/iter{{t}}.jsonl",
        distances=f"{LD_R}/distances/{{arm}}/iter{{t}}.jsonl",
    output:
        weighted=f"{LD_R}/weighted/{{arm}}/iter{{t}}.jsonl",
        diagnostics=f"{LD_R}/weighted/{{arm}}/iter{{t}}.diagnostics.json",
    wildcard_constraints:
        arm=LD_ARM,
        t=r"\d+",
    params:
        row=lambda w: as_json(LD_ROWS[w.arm].public()),
        weights=as_json(LD["weights"]),
        seed=config["seed"],
    log:
        f"{LD_R}/logs/weights_{{arm}}_iter{{t}}.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.methods.ld_align.weights weights --train {input.train} --pairs {input.pairs} "
        "--distances {input.distances} --row-json {params.row:q} --weights-json {params.weights:q} "
        "--seed {params.seed} --out {output.weighted} --diagnostics {output.diagnostics} > {log} 2>&1"


def ld_train_cfg(t):
    """Only what the iteration's weights depend on: its learning rate and beta, the shared training settings."""
    step = LD["schedule"][int(t)]
    return {"train": {**LD["train"], "learning_rate": step["learning_rate"]}, "beta": step["beta"],
            "loss_type": LD["loss_type"], "optimizer": LD["optimizer"], "dtype": config["dtype"]}


rule ld_train:
    input:
        policy=lambda w: f"{ld_policy(w.arm, w.t)}/model.json",
        pairs=lambda w: (f"{LD_R}/weighted/{w.arm}/iter{w.t}.jsonl" if ld_uses_distance(w.arm)
                         else f"{LD_R}/pairs/{w.arm}/iter{w.t}.jsonl"),
    output:
        f"{LD_R}/models/{{arm}}/iter{{t}}/model.json",
    wildcard_constraints:
        arm=LD_ARM,
        t=r"\d+",
    params:
        cfg=lambda w: as_json(ld_train_cfg(w.t)),
    log:
        f"{LD_R}/logs/train_{{arm}}_iter{{t}}.log",
    benchmark:
        f"{LD_R}/benchmarks/train_{{arm}}_iter{{t}}.tsv"
    threads: config["threads"]
    resources: **res("train")
    shell:
        "{PY} -m alignrepro.methods.ld_align.train --policy $(dirname {input.policy}) --pairs {input.pairs} "
        "--config-json {params.cfg:q} --wandb-json {LD_WANDB:q} --arm {wildcards.arm} --iteration {wildcards.t} "
        "--name ld_align-{TIER}-{wildcards.arm}-iter{wildcards.t} --tier {TIER} --out $(dirname {output}) "
        "> {log} 2>&1"


def ld_eval_model(key):
    return LD_START if key == "start" else ld_model(*key.split("/iter"))


rule ld_evaluate:
    input:
        model=lambda w: f"{ld_eval_model(w.key)}/model.json",
        start=f"{LD_START}/model.json",
        heldout=rules.ld_data.output.heldout,
        generated=f"{LD_R}/generations/heldout_start.jsonl",
        verifiable=rules.ld_data.output.verifiable,
    output:
        f"{LD_R}/eval/{{key}}.json",
    wildcard_constraints:
        key=rf"start|({LD_ARM})/iter\d+",
    params:
        spec=as_json({**LD["eval"], "dtype": config["dtype"], "generation": LD_GEN}),
    log:
        f"{LD_R}/logs/evaluate_{{key}}.log",
    benchmark:
        f"{LD_R}/benchmarks/evaluate_{{key}}.tsv"
    threads: config["threads"]
    resources: **res("infer")
    shell:
        "{PY} -m alignrepro.methods.ld_align.evaluate --model $(dirname {input.model}) --start $(dirname {input.start}) "
        "--heldout {input.heldout} --heldout-generated {input.generated} --verifiable {input.verifiable} "
        "--spec-json {params.spec:q} --tier {TIER} --out {output} > {log} 2>&1"


def ld_table_inputs(rows):
    arms = list(rows)
    return {
        "evals": [f"{LD_R}/eval/start.json"] + [f"{LD_R}/eval/{a}/iter{t}.json" for a in arms for t in range(LD_T)],
        "models": [f"{ld_model(a, t)}/model.json" for a in arms for t in range(LD_T)],
        "diagnostics": [f"{LD_R}/weighted/{a}/iter{t}.diagnostics.json" for a in arms if ld_uses_distance(a)
                        for t in range(LD_T)],
        "guide": rules.ld_guide.output[0],
        "data": rules.ld_data.output.meta,
        "reported": os.path.join(workflow.basedir, "methods/ld_align/reported.yaml"),
    }


def ld_table_spec(rows, table):
    return as_json({"tier": TIER, "seed": config["seed"], "table": table, "root": LD_R, "iterations": LD_T,
                    "base": LD["base"], "sft": bool(LD["sft"]), "bootstrap": LD["eval"]["bootstrap"],
                    "rows": {n: {"label": r.label, **r.spec} for n, r in rows.items()}, "order": list(rows),
                    "weights": LD["weights"]})


rule ld_tables:
    input:
        **ld_table_inputs(LD_ARMS),
    output:
        f"{LD_R}/tables/main.md",
        f"{LD_R}/tables/main.csv",
        report(f"{LD_R}/tables/main.png", caption="report/main_png.rst", category="LD-Align", subcategory="plots",
               labels={"item": "metrics per iteration"}),
        f"{LD_R}/tables/guide.md",
        f"{LD_R}/tables/reported.md",
        summary=f"{LD_R}/tables/summary.md",
        # `snakemake --report`: the tables as HTML pages, and the tier facts the captions include
        main=report(f"{LD_R}/tables/main.html", caption="report/main.rst", category="LD-Align", subcategory="tables",
                    labels={"item": "LD-Align vs SPIN per iteration"}),
        guide=report(f"{LD_R}/tables/guide.html", caption="report/guide.rst", category="LD-Align",
                     subcategory="tables", labels={"item": "guide model diagnostics"}),
        reported=report(f"{LD_R}/tables/reported.html", caption="report/reported.rst", category="LD-Align",
                        subcategory="tables", labels={"item": "reported context (SPIN)"}),
        facts=f"{LD_R}/tables/ld_tables.facts.rst",
    params:
        spec=ld_table_spec(LD_ARMS, "main"),
    log:
        f"{LD_R}/logs/tables.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.methods.ld_align.aggregate --spec-json {params.spec:q} --reported {input.reported} "
        "--out-dir {LD_R}/tables --wandb-json {LD_WANDB:q} > {log} 2>&1 "
        "&& {PY} -m alignrepro.report_pages --tier {TIER} --facts {output.facts} --page {output[0]} {output.main} "
        "--page {output[3]} {output.guide} --page {output[4]} {output.reported} >> {log} 2>&1 && cat {output.summary}"


# the ablation table: SPIN and LD-Align (when run) beside the ablation rows
LD_ABLATION_TABLE = {**{k: v for k, v in LD_ARMS.items() if k in ("spin", "ld_align")}, **LD_ABLATIONS}


rule ld_ablations:
    """The ablation table (a separate target unless ld_align.ablations_in_default): SPIN and LD-Align beside
    permuted / inverse weights, the untrained encoder's distances and the policy's own hidden states."""
    input:
        **ld_table_inputs(LD_ABLATION_TABLE),
    output:
        f"{LD_R}/tables/ablations.md",
        f"{LD_R}/tables/ablations.csv",
        summary=f"{LD_R}/tables/ablations_summary.md",
        html=report(f"{LD_R}/tables/ablations.html", caption="report/ablations.rst", category="LD-Align",
                    subcategory="tables", labels={"item": "ablations"}),
        facts=f"{LD_R}/tables/ld_ablations.facts.rst",
    params:
        spec=ld_table_spec(LD_ABLATION_TABLE, "ablations"),
    log:
        f"{LD_R}/logs/ablations.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.methods.ld_align.aggregate --spec-json {params.spec:q} --reported {input.reported} "
        "--out-dir {LD_R}/tables --wandb-json {LD_WANDB:q} > {log} 2>&1 "
        "&& {PY} -m alignrepro.report_pages --tier {TIER} --facts {output.facts} --page {output[0]} {output.html} "
        ">> {log} 2>&1 && cat {output.summary}"


# On the shared leaderboard: the start policy and every main-table model (ld_align.shared_evals: all), only each
# arm's last iteration (final), or none.
if LD["shared_evals"] != "none":
    if LD["sft"]:
        register_shared_model("ld_align/sft", LD_START, LD["base"], "ld_align", "sft")
    for _arm in LD_ARMS:
        for _t in range(LD_T):
            if LD["shared_evals"] == "all" or _t == LD_T - 1:
                register_shared_model(f"ld_align/{_arm}-iter{_t}", ld_model(_arm, _t), LD["base"], "ld_align",
                                      f"{_arm}-iter{_t}")

PAPER_TARGETS["ld_align"] = [rules.ld_tables.output] + ([rules.ld_ablations.output] if LD["ablations_in_default"] else [])
