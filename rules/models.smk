# Base models from the registry (config `models`): converted once, hashed, shared by every paper and tier.


rule base_model:
    output:
        "results/models/{model}/model.json",
    params:
        spec=lambda w: as_json(config["models"][w.model]),
    log:
        "results/logs/models/{model}.log",
    benchmark:
        "results/benchmarks/models/{model}.tsv"
    threads: config["threads"]
    resources: **res("cpu_model")
    shell:
        "{PY} -m alignrepro.models --name {wildcards.model} --spec-json {params.spec:q} "
        "--out results/models/{wildcards.model} > {log} 2>&1"
