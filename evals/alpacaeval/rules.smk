# AlpacaEval-1-style win rate against a reference model's outputs (alpaca_eval's own win-rate functions), with a
# pluggable pairwise judge per record group and a judgment cache shared by all jobs (SQLite, WAL).


def _judge_spec(paper):
    """EVAL_JUDGE[paper]: record group → judge name (evals.judges or built-in), as make_judge specs (judge_spec in
    evals/shared.smk: registry model names → model folders, so the judges in the config stay tier-independent)."""
    return {group: judge_spec(name) for group, name in EVAL_JUDGE[paper].items()}


def _judge_models(paper):
    return [f"{s['model_dir']}/model.json" for s in _judge_spec(paper).values() if "model_dir" in s]


rule eval_winrate:
    input:
        model="results/{paper}/{tier}/generations/{base}/{model_id}.jsonl",
        reference=lambda w: EVAL_REFERENCE[w.paper](w.base),
        judge_models=lambda w: _judge_models(w.paper),
    output:
        "results/{paper}/{tier}/eval/winrate/{base}/{model_id}.json",
    params:
        judge=lambda w: as_json(_judge_spec(w.paper)),
    log:
        "results/{paper}/{tier}/logs/winrate_{base}_{model_id}.log",
    benchmark:
        "results/{paper}/{tier}/benchmarks/winrate_{base}_{model_id}.tsv"
    threads: config["threads"]
    resources: **res_judge("judge_models")
    shell:
        "{PY} -m alignrepro.evals.alpacaeval.winrate --model-outputs {input.model} --reference-outputs "
        "{input.reference} --judge-config {params.judge:q} --cache results/judge_cache.sqlite --out {output} "
        "--tier {wildcards.tier} > {log} 2>&1"
