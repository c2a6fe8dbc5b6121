# Claims with verdicts (alignrepro/claims.py): one generic rule for every paper with a methods/<paper>/claims.yaml
# (its inputs: that file, the paper's default-target tables and the cards of the judges its claims name), and the
# cross-paper table. Included after the papers and evals/shared.smk: it reads PAPER_TARGETS.
from alignrepro import claims as claims_engine

CLAIMS_PAPERS = [p for p in config["papers"] if (PAPERS[p].folder / "claims.yaml").is_file()]
CLAIMS_R = f"results/claims/{TIER}"


def claims_file(paper):
    return str(PAPERS[paper].folder / "claims.yaml")


def claims_tables(paper):
    """The paper's default-target outputs (a list of rule outputs, or one), flat."""
    out = []
    for item in PAPER_TARGETS[paper] if isinstance(PAPER_TARGETS[paper], list) else [PAPER_TARGETS[paper]]:
        out += [item] if isinstance(item, str) else list(item)
    return out


def claims_cards(paper):
    names = claims_engine.judge_names(claims_engine.load(claims_file(paper), paper), config)
    return [f"results/judges/{n}.json" for n in names]


rule claims_paper:
    """A paper's claims tested on its reproduced tables: holds / reversed / inconclusive (why) / untestable (why)."""
    input:
        claims=lambda w: claims_file(w.paper),
        tables=lambda w: claims_tables(w.paper),
        cards=lambda w: claims_cards(w.paper),
    output:
        md=report(f"results/{{paper}}/{TIER}/tables/claims.md", category="Claims", labels={"table": "{paper} claims"}),
        csv=f"results/{{paper}}/{TIER}/tables/claims.csv",
        json=f"results/{{paper}}/{TIER}/tables/claims.json",
    wildcard_constraints:
        paper="|".join(PAPERS) or "none",
    params:
        config=lambda w: as_json({w.paper: config[w.paper]}),
        bootstrap=lambda w: config[w.paper].get("eval", {}).get("bootstrap", 2000),
        seed=config["seed"],
    log:
        f"results/{{paper}}/{TIER}/logs/claims.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.claims paper --claims {input.claims} --paper {wildcards.paper} --tier {TIER} "
        "--root results/{wildcards.paper}/{TIER} --config-json {params.config:q} --cards-dir results/judges "
        "--seed {params.seed} --bootstrap {params.bootstrap} --out-dir results/{wildcards.paper}/{TIER}/tables "
        "> {log} 2>&1"


rule claims_all:
    """Every configured paper's claims and verdicts in one table (results/claims/<tier>/claims.md)."""
    input:
        [f"results/{p}/{TIER}/tables/claims.json" for p in CLAIMS_PAPERS],
    output:
        md=report(f"{CLAIMS_R}/claims.md", category="Claims", labels={"table": "all papers"}),
        csv=f"{CLAIMS_R}/claims.csv",
        json=f"{CLAIMS_R}/claims.json",
    params:
        out_dir=CLAIMS_R,
    log:
        f"{CLAIMS_R}/logs/claims.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.claims cross --inputs {input} --tier {TIER} --out-dir {params.out_dir} > {log} 2>&1 "
        "&& cat {output.md}"
