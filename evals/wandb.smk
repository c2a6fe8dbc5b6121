# The shared evaluation on W&B (evals/wandb_log.py): one evaluation run per model (every shared-benchmark number, a
# Table of its answers, its weights as a reference artifact), the leaderboard and each judge card as Tables and
# artifacts; online, the saved Reports too. Every run goes to the one folder config `wandb.dir` (README: W&B).


rule evals_wandb:
    input:
        board=rules.evals_leaderboard.output.csv,
        scores=rules.evals_leaderboard.input.scores,
        cards=rules.evals_leaderboard.input.cards,
        answers=rules.evals_leaderboard.input.answers,
        models=[f"{m['dir']}/model.json" for m in SHARED_MODELS.values()],
    output:
        f"{EV_R}/wandb.json",
    params:
        spec=as_json({"tier": TIER, "root": EV_R, "models": SHARED_MODELS, "benches": EV_BENCHES, "cards": CARDS,
                      "judge": EV["judge"]}),
        wandb=as_json(config["wandb"]),  # a param: a changed W&B setting logs again
    log:
        f"{EV_R}/logs/wandb.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.evals.wandb_log --spec-json {params.spec:q} --wandb-json {params.wandb:q} --out {output} "
        "> {log} 2>&1"
