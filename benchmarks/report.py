"""The benchmark's Markdown summary from its JSON result (one table per part; ratios > 1 mean the project is
faster than the raw library)."""

from __future__ import annotations

from typing import Any


def _mmm(s: dict[str, float] | None, fmt: str = "{:.2f}") -> str:
    if not s or not s.get("n"):
        return "–"
    return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}–{fmt.format(s['max'])}, n={s['n']})"


def _variants(part: dict[str, Any], unit: str) -> list[str]:
    lines = [f"| variant | {unit}/s wall | {unit}/s CPU | s per run |", "|---|---|---|---|"]
    for name, v in part["variants"].items():
        lines.append(f"| {name} | {_mmm(v[f'{unit}_per_s'])} | {_mmm(v[f'{unit}_per_cpu_s'])} | {_mmm(v['wall_s'])} |")
    return lines


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    out = [
        "# alignrepro benchmark",
        "",
        f"{m['created_utc']}, commit `{m['git_commit']}`, {m['cpu_model']}, {m['cores']} cores, load "
        f"{m['load_avg_1_5_15']}, torch threads {m['torch_threads']}, native bf16: {m['native_bf16']}; "
        f"CPU flags: {' '.join(m['cpu_flags']) or 'none'}. Mode: {result['mode']}. Medians (min–max, n repeats), "
        "interleaved; a ratio is project / raw per repeat (> 1: the project is faster).",
        "",
    ]
    if g := result.get("generation"):
        out += ["## Generation (HFBackend vs raw batched HF generate, same longest-first batches)", ""]
        out += [f"Settings: {g['settings']}; identical outputs: **{g['identical_outputs']}**; tokens/s ratio (wall) "
                f"**{_mmm(g['ratio_project_vs_raw'])}**, (CPU) {_mmm(g['ratio_project_vs_raw_cpu'])}; time for the "
                f"same prompts, raw / project: wall {_mmm(g.get('time_ratio_raw_over_project'))}, CPU "
                f"**{_mmm(g.get('time_ratio_raw_over_project_cpu'))}**.", ""]  # fmt: skip
        out += [*_variants(g, "tokens"), ""]
    if t := result.get("training"):
        out += ["## Training (tokens/s; only trainer.train() timed)", ""]
        out += [f"Settings: {t['settings']}. Project SFT / raw TRL SFT: **{_mmm(t['ratio_project_sft_vs_raw'])}**; "
                f"CUT trainer / raw TRL SFT on the same sequences: **{_mmm(t['ratio_cut_vs_raw_sft'])}** (CPU "
                f"{_mmm(t['ratio_cut_vs_raw_sft_cpu'])}).", ""]  # fmt: skip
        out += [*_variants(t, "tokens"), ""]
    if j := result.get("judging"):
        out += ["## Judging (local judge with prefix cache vs raw forward)", ""]
        spj = ", ".join(f"{k} {v:.3f} s" for k, v in j["s_per_judgment_median"].items())
        out += [f"Settings: {j['settings']}; s per judgment (median): {spj}; ratio "
                f"**{_mmm(j['ratio_project_vs_raw'])}** (CPU {_mmm(j.get('ratio_project_vs_raw_cpu'))}); "
                "max |difference| of values and answer masses: "
                f"{j['max_abs_diff_values_and_masses']:.2e} "
                f"({j['n_unparsable']} unparsable).", ""]  # fmt: skip
        out += [*_variants(j, "judgments"), ""]
    if o := result.get("overhead"):
        out += ["## Per-job fixed overhead (`python -m <module> --help`, CPU s; model load measured apart)", ""]
        out += ["| entry point | CPU s | wall s |", "|---|---|---|"]
        for name, v in o["measured"]["per_module"].items():
            out.append(f"| {name} | {_mmm(v['cpu_s'])} | {_mmm(v['wall_s'])} |")
        out += ["", f"Model load (tokenizer + weights, CPU s): {o['measured']['model_load_cpu_s']}."]
        if s := o.get("share"):
            out += [f"Estimated over {s['jobs']} jobs of `{o['source']}`: {s['fixed_cpu_s']} CPU s "
                    f"({s['per_job_cpu_s']} per job) = **{100 * (s['share_of_run_cpu'] or 0):.1f} %** of the "
                    "run's CPU time (benchmark files; target ≤ 3 %)."]  # fmt: skip
        out.append("")
    if d := result.get("dag"):
        out += ["## Workflow (ci tier, scratch copy of a completed run)", ""]
        if u := d.get("update"):
            out.append(f"- Bringing the copy up to date: {u['wall_s']} s, jobs {u['jobs_run'] or 'none'}.")
        if n := d.get("noop"):
            out.append(f"- No-op rerun: wall {_mmm(n['wall_s'])} s, CPU {_mmm(n['cpu_s'])} s; nothing to do: "
                       f"{n['nothing_to_do']} (target ≤ 5 s).")  # fmt: skip
        if a := d.get("add_row"):
            out.append(f"- Adding one CUT row (IPO copy): {a['n_jobs']} jobs ({a['jobs_run']}), {a['wall_s']} s wall; "
                       f"judge cache {a['judge_cache_log']['hits']} hits / {a['judge_cache_log']['misses']} misses, "
                       f"{a['judgments_added']} judgments added (rc {a['rc']}).")  # fmt: skip
        out.append("")
    for key, title in (("ci_run", "ci run"), ("run", "Default run")):
        r = result.get(key)
        if not r:
            continue
        wall = f"{r['wall_s'] / 60:.1f} min" if r.get("wall_s") else "–"
        out += [f"## {title}: {r['run_dir']}", "",
                f"Wall (first job start to last job end): {wall}; {r['n_jobs']} jobs, {r['n_benchmark_files']} "
                f"benchmark files: {r['cpu_s']:.0f} CPU s, {r['job_wall_s']:.0f} job-seconds.", "",
                "| rule | jobs | CPU s | share | job wall s | max RSS MB |", "|---|---|---|---|---|---|"]  # fmt: skip
        for row in r["top_rules"]:
            cpu = "–" if row["cpu_s"] is None else f"{row['cpu_s']:.1f}"
            share = "–" if row.get("cpu_share") is None else f"{100 * row['cpu_share']:.1f} %"
            rss = "–" if row["max_rss_mb"] is None else f"{row['max_rss_mb']:.0f}"
            out.append(f"| {row['rule']} | {row['jobs']} | {cpu} | {share} | {row['wall_s']:.1f} | {rss} |")
        out.append("")
    return "\n".join(out) + "\n"
