"""One judge vocabulary: CUT's critic and MORLAIF's feedback model are named `evals.judges` entries, as the judges are.
Each tier's jobs get the very spec the inline YAML gave them (so the same critic ids, feedback-cache keys and
provenance: existing results stay valid), and a name that does not exist or does not fit its use fails at start."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from workflow import smk

from alignrepro.config import ConfigError, deep_merge, resolve_config
from alignrepro.judges import named_spec, registry

# The inline specs as methods/cut/config.yaml and methods/morlaif/config.yaml wrote them before they became names
OLD_CUT = """
defaults:
  critic:
    verifiable: {backend: oracle}
    open: {backend: openai, model: gpt-4-0613, max_new_tokens: 512, max_requests: 6000}
tiers:
  ci:
    critic:
      verifiable: {backend: oracle}
      open: {backend: local, model: ci-random-llama, max_new_tokens: 8, batch_size: 8}
  tiny:
    critic:
      verifiable: {backend: oracle}
      open: {backend: local, model: smollm2-135m-instruct, max_new_tokens: 48, batch_size: 8}
  full: {}
"""
OLD_MORLAIF = """
defaults:
  feedback: {backend: openai, model: gpt-3.5-turbo-0125, order: both, layout: standard, cai_template: standard,
             max_requests: 2500000}
tiers:
  ci:
    feedback: {backend: heuristic, order: both, layout: standard, cai_template: standard}
  tiny:
    feedback: {backend: local, model: smollm2-135m-instruct, batch_size: 4, order: both, layout: principle_last,
               cai_template: standard}
  full: {}
"""
TIERS = ["ci", "tiny", "full"]


def _old(text: str, tier: str) -> dict:
    tree = yaml.safe_load(text)
    return deep_merge(tree["defaults"], tree["tiers"][tier])


def old_critic_job(tier: str, dtype: str) -> dict:
    """What the old rule sent the judge step (methods/cut/rules.smk: `dtype` added to a local critic)."""
    critic = _old(OLD_CUT, tier)["critic"]
    return {k: {**s, "dtype": dtype} if s["backend"] == "local" else s for k, s in critic.items()}


def old_feedback(tier: str, dtype: str | None) -> dict:
    """What the old rule sent the feedback step (dtype) and MORLAIF's tables' provenance (no dtype)."""
    fb = _old(OLD_MORLAIF, tier)["feedback"]
    return {**fb, "dtype": dtype} if dtype and fb["backend"] == "local" else fb


def as_json(obj) -> str:  # rules/common.smk's
    return json.dumps(obj, sort_keys=True)


@pytest.mark.parametrize("tier", TIERS)
def test_named_critics_and_feedback_models_resolve_to_the_old_inline_specs(tier):
    cfg = resolve_config({"tier": tier})
    entries, dtype = registry(cfg), cfg["dtype"]
    critic = {g: named_spec(entries, n, dtype) for g, n in cfg["cut"]["critic"].items()}
    assert as_json(critic) == as_json(old_critic_job(tier, dtype))
    fb = cfg["morlaif"]["feedback"]
    options = {k: v for k, v in fb.items() if k != "model"}
    assert named_spec(entries, fb["model"], dtype, **options) == old_feedback(tier, dtype)
    assert named_spec(entries, fb["model"], **options) == old_feedback(tier, None)


def _json_arg(out: str, flag: str) -> list[dict]:
    return [json.loads(m) for m in sorted(set(re.findall(rf"{flag} '([^']*)'", out)))]


@pytest.mark.parametrize("tier", TIERS)
def test_the_jobs_get_the_old_specs_byte_for_byte(tmp_path, tier):
    """Through the real rules (a dry run prints every job's command): the judge step's --critic-json, the feedback
    steps' --feedback-json and the feedback spec in MORLAIF's tables' provenance are the old ones, as strings."""
    res = smk(tmp_path, "-n", "-p", "--config", f"tier={tier}", "papers=[cut,morlaif]", timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    dtype = resolve_config({"tier": tier})["dtype"]
    assert re.findall(r"--critic-json '([^']*)'", res.stdout)  # the dry run shows the judge jobs
    assert set(re.findall(r"--critic-json '([^']*)'", res.stdout)) == {as_json(old_critic_job(tier, dtype))}
    assert set(re.findall(r"--feedback-json '([^']*)'", res.stdout)) == {as_json(old_feedback(tier, dtype))}
    tables = [s for s in _json_arg(res.stdout, "--spec-json") if "feedback" in s and "headline" in s]
    assert len(tables) == 1 and as_json(tables[0]["feedback"]) == as_json(old_feedback(tier, None))


@pytest.mark.parametrize(
    ("tier", "user", "message"),
    [
        (
            "tiny",
            {"cut": {"critic": {"open": "smollm2-critc"}}},
            "config key 'cut.critic.open': unknown critic 'smollm2-critc' (did you mean 'smollm2-critic'?). "
            "Available (evals.judges or built-in): gpt35-morlaif, gpt4-cut-critic, oracle, qwen-coder, smollm2, "
            "smollm2-critic",  # the names a critic can be (gpt4's prices are no critic's)
        ),
        (
            "tiny",
            {"morlaif": {"feedback": {"model": "smollm"}}},
            "config key 'morlaif.feedback.model': unknown feedback model 'smollm' (did you mean 'smollm2'?)",
        ),
        (  # a critic's generation settings do not make a pairwise judge
            "tiny",
            {"evals": {"judge": "smollm2-critic"}},
            "config key 'evals.judge': 'smollm2-critic' cannot be used as a judge: config key "
            "'evals.judges.smollm2-critic': key 'max_new_tokens' is not used with backend 'local'",
        ),
        (  # a judge's annotator prompt and prices are nothing a critic takes
            "full",
            {"cut": {"critic": {"open": "gpt4"}}},
            "config key 'cut.critic.open': 'gpt4' cannot be used as a critic: config key 'evals.judges.gpt4': "
            "key 'price_per_1k_input' is not used with backend 'openai'",
        ),
        (
            "ci",
            {"morlaif": {"feedback": {"model": "oracle"}}},
            "config key 'morlaif.feedback.model': 'oracle' cannot be used as a feedback model: "
            "config key 'evals.judges.oracle.backend': 'oracle' is not one of ['local', 'openai', 'heuristic']",
        ),
        (  # the old inline form is refused, naming the key
            "ci",
            {"cut": {"critic": {"open": {"backend": "local", "model": "ci-random-llama"}}}},
            "config key 'cut.critic.open': {'backend': 'local', 'model': 'ci-random-llama'} is not of type 'string'",
        ),
        (
            "ci",
            {"morlaif": {"feedback": {"backend": "heuristic"}}},
            "config key 'morlaif.feedback': unknown key 'backend'",
        ),
        (  # an entry no use names must still fit some role
            "ci",
            {"evals": {"judges": {"mine": {"backend": "heuristic", "max_new_tokens": 4}}}},
            "config key 'evals.judges.mine': key 'max_new_tokens' is not used with backend 'heuristic'",
        ),
        (
            "ci",
            {"evals": {"judges": {"mine": {"backend": "local", "model": "ci-random-lama", "max_new_tokens": 4}}}},
            "config key 'evals.judges.mine.model': unknown model 'ci-random-lama' (did you mean 'ci-random-llama'?)",
        ),
    ],
)
def test_a_name_that_is_unknown_or_does_not_fit_its_use_fails_at_start(tier, user, message):
    with pytest.raises(ConfigError) as e:
        resolve_config({"tier": tier, **user})
    assert message in str(e.value)


def test_one_entry_may_play_several_roles():
    # the tiny judge is also MORLAIF's feedback model; it can be CUT's critic too (at the critic's default 64 tokens)
    cfg = resolve_config({"tier": "tiny", "cut": {"critic": {"open": "smollm2"}}})
    assert cfg["morlaif"]["feedback"]["model"] == cfg["evals"]["judge"] == cfg["cut"]["critic"]["open"] == "smollm2"
    spec = named_spec(registry(cfg), "smollm2", "float32")
    assert spec == {"backend": "local", "model": "smollm2-135m-instruct", "batch_size": 4, "dtype": "float32"}
    assert named_spec(registry(cfg), "smollm2", "float32", order="both")["order"] == "both"  # the use's options
    assert named_spec(registry(cfg), "oracle", "float32") == {"backend": "oracle"}  # no dtype but for a local model


def test_every_role_is_a_schema_and_the_registry_takes_their_keys():
    from alignrepro.config import schema
    from alignrepro.references import roles

    assert roles()[0] == "judge" and {"critic", "feedback_model"} <= set(roles())  # + what CUT's, MORLAIF's add
    defs = schema()["$defs"]
    entry = defs["judge_entry"]["properties"]
    for role in roles():
        assert set(defs[role]["properties"]) <= set(entry), role
    assert entry["max_new_tokens"]["description"].startswith("critic: ")  # whose key it is


def test_a_manifest_names_judges_by_role_never_by_inline_spec(tmp_path):
    from alignrepro.errors import UserError
    from alignrepro.papers import _read

    folder = tmp_path / "mine"
    folder.mkdir()
    for name in ("rules.smk", "config.yaml", "schema.yaml"):
        (folder / name).write_text("")
    manifest = "name: mine\ntitle: t\narxiv: '1'\nrules: rules.smk\nconfig: config.yaml\nschema: schema.yaml\n"
    (folder / "paper.yaml").write_text(manifest + "references: {model_specs: {'critic.*': local}}\n")
    with pytest.raises(UserError, match=r"references takes `models` and `judges`, not \['model_specs'\]"):
        _read(folder)
    (folder / "paper.yaml").write_text(manifest + "references: {judges: {'critic.*': critic}}\n")
    assert _read(folder).references == {"judges": {"critic.*": "critic"}}
