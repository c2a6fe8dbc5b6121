# Claims with verdicts (alignrepro/claims.py): one generic rule for every paper with a methods/<paper>/claims.yaml
# (its inputs: that file, the paper's default-target tables and the cards of the judges its claims name), and the
# cross-paper table. Included after the papers and evals/shared.smk: it reads PAPER_TARGETS.
from snakemake.io import get_flag_value, is_flagged

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


def claims_report_category(paper):
    """The report category the paper's own items use (its rules name it on its results/<paper>/ outputs), so its
    claims sit beside its tables; the paper's name when it has none."""
    for rule in workflow.rules:
        for f in rule.output:
            if is_flagged(f, "report") and str(f).startswith(f"results/{paper}/"):
                return get_flag_value(f, "report").category
    return paper


CLAIMS_CATEGORY = {p: claims_report_category(p) for p in CLAIMS_PAPERS}


rule claims_paper:
    """A paper's claims tested on its reproduced tables: holds / reversed / inconclusive (why) / untestable (why)."""
    input:
        claims=lambda w: claims_file(w.paper),
        tables=lambda w: claims_tables(w.paper),
        cards=lambda w: claims_cards(w.paper),
    output:
        md=f"results/{{paper}}/{TIER}/tables/claims.md",
        csv=f"results/{{paper}}/{TIER}/tables/claims.csv",
        json=f"results/{{paper}}/{TIER}/tables/claims.json",
        # `snakemake --report`: the claims as an HTML page in the paper's category, and the facts its caption includes
        html=report(f"results/{{paper}}/{TIER}/tables/claims.html", caption="report/claims_paper.rst",
                    category=lambda w: CLAIMS_CATEGORY[w.paper], subcategory="claims", labels={"item": "claims"}),
        facts=f"results/{{paper}}/{TIER}/tables/claims.facts.rst",
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
        "> {log} 2>&1 && {PY} -m alignrepro.report_pages --tier {TIER} --cards {input.cards} --facts {output.facts} "
        "--page {output.md} {output.html} >> {log} 2>&1"


rule claims_all:
    """Every configured paper's claims and verdicts in one table (results/claims/<tier>/claims.md)."""
    input:
        claims=[f"results/{p}/{TIER}/tables/claims.json" for p in CLAIMS_PAPERS],
        cards=list(dict.fromkeys(c for p in CLAIMS_PAPERS for c in claims_cards(p))),  # for the report's caption
    output:
        md=f"{CLAIMS_R}/claims.md",
        csv=f"{CLAIMS_R}/claims.csv",
        json=f"{CLAIMS_R}/claims.json",
        html=report(f"{CLAIMS_R}/claims.html", caption="report/claims_all.rst", category="All papers",
                    subcategory="claims", labels={"item": "claims and verdicts of every paper"}),
        facts=f"{CLAIMS_R}/claims.facts.rst",
    params:
        out_dir=CLAIMS_R,
    log:
        f"{CLAIMS_R}/logs/claims.log",
    resources: **res("cpu")
    shell:
        "{PY} -m alignrepro.claims cross --inputs {input.claims} --tier {TIER} --out-dir {params.out_dir} > {log} 2>&1 "
        "&& {PY} -m alignrepro.report_pages --tier {TIER} --cards {input.cards} --facts {output.facts} "
        "--page {output.md} {output.html} >> {log} 2>&1 && cat {output.md}"
