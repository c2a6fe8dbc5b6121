# Oracle-scored accuracy on held-out verifiable tasks: the tiny tier's most honest signal.


rule eval_accuracy:
    input:
        "results/{paper}/{tier}/generations/{base}/{model_id}.jsonl",
    output:
        "results/{paper}/{tier}/eval/accuracy/{base}/{model_id}.json",
    log:
        "results/{paper}/{tier}/logs/accuracy_{base}_{model_id}.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.evals.verifiable.accuracy --generations {input} --out {output} --tier {wildcards.tier} > {log} 2>&1"
