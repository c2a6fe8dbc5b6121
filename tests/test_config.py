import copy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from alignrepro.config import CONFIG_DIR, ConfigError, load_yaml, resolve_config
from alignrepro.config import schema as assembled_schema
from alignrepro.errors import UserError

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


@pytest.mark.parametrize("tier", ["ci", "tiny", "full"])
def test_every_tier_resolves_and_validates(tier):
    cfg = resolve_config({"tier": tier})
    assert cfg["tier"] == tier
    assert "cut" in cfg["cut"]["methods"]


def test_tier_preset_overrides_defaults_and_user_overrides_tier():
    tiny = resolve_config({"tier": "tiny"})
    assert tiny["cut"]["bases"] == ["smollm2-135m-instruct"]  # tier over defaults
    assert tiny["cut"]["cut"]["threshold"] == 1.1  # paper default kept
    user = resolve_config({"tier": "tiny", "cut": {"cut": {"threshold": 1.2}}})
    assert user["cut"]["cut"]["threshold"] == 1.2
    assert user["cut"]["cut"]["weight_unlike"] == 1.0  # siblings survive a nested override


@pytest.mark.parametrize("tier", ["ci", "tiny", "full"])
def test_training_seeds_follow_the_run_seed_unless_pinned(tier):
    cfg = resolve_config({"tier": tier, "seed": 7})
    seeds = [cfg["cut"]["train"]["seed"], cfg["morlaif"]["pm"]["train"]["seed"], cfg["mote"]["train"]["train"]["seed"]]
    assert seeds == [7, 7, 7]
    pinned = resolve_config({"tier": tier, "seed": 7, "mote": {"train": {"train": {"seed": 3}}}})
    assert pinned["mote"]["train"]["train"]["seed"] == 3 and pinned["cut"]["train"]["seed"] == 7


# CUT's evaluation judges before they became names (the inline specs of methods/cut/config.yaml, per tier)
CUT_INLINE_JUDGES = {
    "ci": {"verifiable": {"backend": "oracle"}, "open": {"backend": "heuristic"}},
    "tiny": {
        "verifiable": {"backend": "oracle"},
        "open": {"backend": "local", "model": "smollm2-135m-instruct", "batch_size": 4},
    },
    "full": {
        "verifiable": {"backend": "oracle"},
        "open": {"backend": "openai", "model": "gpt-4-0613", "max_requests": 2000},
    },
}


def _named_judge(cfg, name):
    from alignrepro.judges import BUILTIN_JUDGES

    return {**BUILTIN_JUDGES, **cfg["evals"]["judges"]}[name]


@pytest.mark.parametrize("tier", ["ci", "tiny"])
def test_cut_judges_by_name_are_the_old_inline_specs(tier):
    """Same spec → same make_judge spec (model folder, dtype) → same judge id and judgment-cache keys."""
    from alignrepro.judges import resolve_spec

    cfg = resolve_config({"tier": tier})
    for group, old in CUT_INLINE_JUDGES[tier].items():
        new = _named_judge(cfg, cfg["cut"]["eval"]["judge"][group])
        assert new == old
        assert resolve_spec(new, dtype=cfg["dtype"]) == resolve_spec(old, dtype=cfg["dtype"])


def test_cut_ci_judges_by_name_keep_their_judgment_cache_keys():
    from alignrepro.judges import PairItem, make_judge, resolve_spec
    from alignrepro.judges.cache import item_key

    cfg = resolve_config({"tier": "ci"})
    item = PairItem("What is 2 plus 3?", "5", "6")
    for group, old in CUT_INLINE_JUDGES["ci"].items():
        new_judge = make_judge(resolve_spec(_named_judge(cfg, cfg["cut"]["eval"]["judge"][group])))
        old_judge = make_judge(resolve_spec(old))
        assert new_judge.id == old_judge.id
        assert item_key(new_judge, item, {}) == item_key(old_judge, item, {})


def test_cut_full_judge_by_name_is_the_same_gpt4_judge(monkeypatch):
    """gpt4-cut adds prices (cost logging) to the old inline spec; identity and cache keys do not depend on them."""
    from alignrepro.judges import PairItem, make_judge
    from alignrepro.judges.cache import item_key

    monkeypatch.setenv("OPENAI_API_KEY", "test-key")  # the client checks the key exists; nothing is sent
    cfg = resolve_config({"tier": "full"})
    name = cfg["cut"]["eval"]["judge"]["open"]
    new, old = _named_judge(cfg, name), CUT_INLINE_JUDGES["full"]["open"]
    assert {k: v for k, v in new.items() if not k.startswith("price_")} == old
    item = PairItem("Name a colour.", "Blue.", "A colour.")
    new_judge, old_judge = make_judge(new), make_judge(old)
    assert new_judge.id == old_judge.id == "openai:gpt-4-0613"
    assert item_key(new_judge, item, {}) == item_key(old_judge, item, {})
    assert new_judge.client.max_requests == 2000  # CUT's request budget, as before
    assert cfg["cut"]["eval"]["judge"]["verifiable"] == "oracle"


def test_bad_value_names_the_key():
    with pytest.raises(ConfigError) as e:
        resolve_config({"tier": "tiny", "cut": {"train": {"learning_rate": "fast"}}})
    assert "cut.train.learning_rate" in str(e.value)
    assert "'fast' is not of type 'number'" in str(e.value)


def test_typo_key_is_rejected_with_its_name():
    with pytest.raises(ConfigError) as e:
        resolve_config({"tier": "tiny", "cut": {"cut": {"treshold": 1.1}}})
    assert "cut.cut" in str(e.value) and "treshold" in str(e.value)


def test_unknown_tier_is_rejected():
    with pytest.raises(ConfigError, match="config key 'tier'"):
        resolve_config({"tier": "huge"})


def test_bad_wheel_hash_is_rejected():
    with pytest.raises(ConfigError, match="models.smollm2-135m-instruct.gguf_sha256"):
        resolve_config({"tier": "tiny", "models": {"smollm2-135m-instruct": {"gguf_sha256": "abc"}}})


def test_nested_cli_strings_are_read_as_scalars_and_merged():
    # what Snakemake passes for --config 'cut={dpo: {beta: 0.3}, cut: {keep_error_judgments: "true"}}'
    cfg = resolve_config({"tier": "ci", "cut": {"dpo": {"beta": "0.3"}, "cut": {"keep_error_judgments": "true"}}})
    assert cfg["cut"]["dpo"]["beta"] == 0.3 and cfg["cut"]["cut"]["keep_error_judgments"] is True
    assert cfg["cut"]["cut"]["weight_unlike"] == 1.0 and cfg["cut"]["train"]["lora"]["r"] == 16
    assert cfg["cut"]["online_base"] == "ci-random-llama"  # a string stays a string


# ------------------------------------------------------------------------------------ values that must not pass
@pytest.mark.parametrize(
    ("user", "key", "shown"),
    [
        ({"cut": {"train": {"learning_rate": float("nan")}}}, "cut.train.learning_rate", "nan"),  # YAML .nan
        ({"cut": {"train": {"learning_rate": ".inf"}}}, "cut.train.learning_rate", "inf"),  # --config '...: .inf'
        ({"mote": {"train": {"train": {"step_token_lr": float("-inf")}}}}, "mote.train.train.step_token_lr", "-inf"),
        ({"morlaif": {"scalarizer_params": {"variances": [1.0, float("nan")]}}}, "variances[1]", "nan"),
    ],
)
def test_non_finite_numbers_are_rejected_naming_the_key(user, key, shown):
    # NaN compares false with every bound, so `exclusiveMinimum: 0` alone let a .nan learning rate through
    with pytest.raises(ConfigError) as e:
        resolve_config({"tier": "tiny", **user})
    assert f"{key}': {shown} is not a finite number" in str(e.value)


@pytest.mark.parametrize(
    ("tier", "user", "key"),
    [
        ("ci", {"models": {"ci-random-llama": {"layers": -1}}}, "models.ci-random-llama.layers"),  # a model, no layers
        ("ci", {"models": {"ci-random-llama": {"hidden_size": 12}}}, "models.ci-random-llama.hidden_size"),
        ("tiny", {"cut": {"train": {"learning_rate": 2.0}}}, "cut.train.learning_rate"),
        ("tiny", {"cut": {"train": {"lora": {"dropout": 1.0}}}}, "cut.train.lora.dropout"),
        ("tiny", {"morlaif": {"pm": {"train": {"learning_rate": 0}}}}, "morlaif.pm.train.learning_rate"),
        ("tiny", {"morlaif": {"pm": {"train": {"max_length": 0}}}}, "morlaif.pm.train.max_length"),
        ("tiny", {"morlaif": {"ppo": {"learning_rate": 0}}}, "morlaif.ppo.learning_rate"),
        ("tiny", {"morlaif": {"ppo": {"mini_batch_size": 0}}}, "morlaif.ppo.mini_batch_size"),
        ("tiny", {"morlaif": {"ppo": {"gamma": 1.5}}}, "morlaif.ppo.gamma"),
        ("tiny", {"morlaif": {"scalarizer_params": {"quantile": 0}}}, "morlaif.scalarizer_params.quantile"),
        (
            "tiny",
            {"mote": {"train": {"train": {"per_device_batch_size": 0}}}},
            "mote.train.train.per_device_batch_size",
        ),
        ("tiny", {"mote": {"train": {"train": {"epochs": 0}}}}, "mote.train.train.epochs"),
        ("tiny", {"mote": {"train": {"train": {"max_steps": 0}}}}, "mote.train.train.max_steps"),
        ("tiny", {"mote": {"train": {"lora": {"dropout": 1.5}}}}, "mote.train.lora.dropout"),
        ("tiny", {"mote": {"chains": {"generation": {"batch_size": 0}}}}, "mote.chains.generation.batch_size"),
        (
            "ci",
            {"evals": {"judges": {"ci-llama-critic": {"max_new_tokens": 0}}}},
            "evals.judges.ci-llama-critic.max_new_tokens",
        ),
        ("tiny", {"seed": -1}, "seed"),
    ],
)
def test_rates_and_sizes_have_bounds(tier, user, key):
    with pytest.raises(ConfigError) as e:
        resolve_config({"tier": tier, **user})
    assert f"config key '{key}'" in str(e.value)


def test_judge_backends_are_those_each_place_accepts():
    from alignrepro.judges import BACKENDS

    schema = assembled_schema()["$defs"]
    assert set(schema["judge"]["properties"]["backend"]["enum"]) == set(BACKENDS)  # make_judge's backends
    # one name per backend: the in-process model is `local` for judges, critics, feedback and generation alike
    assert set(schema["critic"]["properties"]["backend"]["enum"]) == {"oracle", "local", "openai"}  # critic_for
    assert set(schema["feedback_model"]["properties"]["backend"]["enum"]) == {"local", "openai", "heuristic"}
    assert set(schema["judge_entry"]["properties"]["backend"]["enum"]) == set(BACKENDS)  # every role's, no more
    with pytest.raises(ConfigError, match=r"evals.judges.heuristic.backend': 'hf' is not one of"):
        resolve_config({"tier": "ci", "evals": {"judges": {"heuristic": {"backend": "hf"}}}})
    with pytest.raises(ConfigError, match=r"evals.judges.ci-llama-critic.backend': 'hf' is not one of"):
        resolve_config({"tier": "ci", "evals": {"judges": {"ci-llama-critic": {"backend": "hf", "model": "x"}}}})
    with pytest.raises(ConfigError, match=r"cut.generation.backend': 'hf' is not one of"):
        resolve_config({"tier": "ci", "cut": {"generation": {"backend": "hf"}}})
    # CUT's evaluation judges are names now, not specs
    with pytest.raises(ConfigError, match=r"cut.eval.judge.open': .* is not of type 'string'"):
        resolve_config({"tier": "ci", "cut": {"eval": {"judge": {"open": {"backend": "heuristic"}}}}})
    assert resolve_config({"tier": "ci"})["evals"]["judges"]["ci-llama-critic"]["backend"] == "local"
    # a key of another backend: make_judge would refuse it only when the job runs
    with pytest.raises(ConfigError) as e:
        resolve_config({"tier": "ci", "evals": {"judges": {"heuristic": {"backend": "heuristic", "model": "x"}}}})
    assert "'evals.judges.heuristic': key 'model' is not used with backend 'heuristic'" in str(e.value)


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ({"morlaif": {"ppo": {"stpes": 3}}}, "config key 'morlaif.ppo': unknown key 'stpes' (did you mean 'steps'?)"),
        (
            {"morlaif": {"ppo": {"lerning_rate": 1e-3}}},
            "config key 'morlaif.ppo': unknown key 'lerning_rate' (did you mean 'learning_rate'?)",
        ),
        (
            {"mote": {"train": {"train": {"lerning_rate": 1e-3}}}},
            "config key 'mote.train.train': unknown key 'lerning_rate' (did you mean 'learning_rate'?)",
        ),
        (
            {"morlaif": {"ppo": {"kl": {"init_coeff": 0.1}}}},
            "config key 'morlaif.ppo.kl': unknown key 'init_coeff' (did you mean 'init_coef'?)",
        ),
        (
            {"mote": {"data": {"harmful_fraction": 0.3}}},  # MORLAIF's spelling in MoTE's section
            "config key 'mote.data': unknown key 'harmful_fraction' (did you mean 'harmful_frac'?)",
        ),
        (
            {"mote": {"jailbreak": {"n_requets": 2, "templates_per_request": 2}}},
            "config key 'mote.jailbreak': unknown key 'n_requets' (did you mean 'n_requests'?)",
        ),
        ({"seedz": 3}, "config key '<top level>': unknown key 'seedz' (did you mean 'seed"),
    ],
)
def test_a_typo_names_the_closest_valid_key(user, message):
    with pytest.raises(ConfigError) as e:
        resolve_config({"tier": "ci", **user})
    assert message in str(e.value)


def _schema_nodes(node, path=()):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            if key != "if":  # an `if` only selects a branch: its objects are conditions, not config objects
                yield from _schema_nodes(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _schema_nodes(value, (*path, i))


def test_every_schema_object_is_closed_and_every_property_described():
    nodes = list(_schema_nodes(assembled_schema()))  # shared + every paper's fragment
    objects = [(p, n) for p, n in nodes if "properties" in n or n.get("type") == "object"]
    assert len(objects) >= 50  # the walk sees the schema's objects
    open_ = [".".join(map(str, p)) for p, n in objects if n.get("additionalProperties", True) is True]
    assert not open_, f"objects without additionalProperties: false (or a closed value schema): {open_}"
    undescribed = [
        ".".join(map(str, (*p, k)))
        for p, n in nodes
        if isinstance(n.get("properties"), dict) and p[-1:] != ("properties",)
        for k, s in n["properties"].items()
        if not (isinstance(s, dict) and isinstance(s.get("description"), str) and 0 < len(s["description"]) <= 120)
    ]
    assert not undescribed, f"properties without a short description: {undescribed}"


def test_schema_lists_every_key_the_in_code_defaults_accept():
    # Closing an object must not reject a key the code reads: give every in-code default back through the config.
    # Left out: what the rules inject themselves (dtype, seed, ppo's scalarizer_params, the sampler's budget).
    from alignrepro.methods.morlaif import analysis, data, pm, ppo, scalarizers
    from alignrepro.methods.mote import chains, queries
    from alignrepro.methods.mote import train as mote_train

    def drop(d, *keys):
        return {k: v for k, v in d.items() if k not in keys}

    gen = drop(chains.gen_defaults(), "dtype", "seed")
    user = {
        "tier": "ci",
        "morlaif": {
            "ppo": {**drop(ppo.defaults(), "scalarizer_params", "dtype"), "batch_size": 2, "steps": 1},
            "pm": drop(pm.default_config(), "dtype"),
            "analysis": drop(analysis.default_config(), "seed"),
            "scalarizer_params": dict(scalarizers.DEFAULT_PARAMS),
            "sample": drop(data.sample_defaults(), "max_new_tokens", "batch_size", "dtype"),
        },
        "mote": {
            "train": drop(mote_train.defaults(), "dtype"),
            "data": queries.defaults(),
            "chains": {"generation": gen},
            "baseline_generation": gen,
        },
    }
    cfg = resolve_config(copy.deepcopy(user))
    assert cfg["morlaif"]["ppo"]["value_trainable_layers"] == "all" and cfg["mote"]["train"]["mote"]["top_k"] == 2


# ------------------------------------------------------------------------------------------ names across the tree
@pytest.mark.parametrize(
    ("user", "message"),
    [
        ({"cut": {"bases": ["nope"]}}, "config key 'cut.bases[0]': unknown model 'nope'. Available: ci-random-llama"),
        ({"cut": {"online_base": "nope"}}, "config key 'cut.online_base': unknown model 'nope'"),
        ({"morlaif": {"bases": ["ci-random-llama", "nope"]}}, "config key 'morlaif.bases[1]': unknown model 'nope'"),
        ({"mote": {"bases": ["nope"]}}, "config key 'mote.bases[0]': unknown model 'nope'"),
        (
            {"cut": {"critic": {"open": "ci-llama-critc"}}},
            "config key 'cut.critic.open': unknown critic 'ci-llama-critc' (did you mean 'ci-llama-critic'?)",
        ),
        (
            {"evals": {"judges": {"mine": {"backend": "local", "model": "ci-random-lama"}}}},
            "config key 'evals.judges.mine.model': unknown model 'ci-random-lama' (did you mean 'ci-random-llama'?)",
        ),
        (
            {"morlaif": {"feedback": {"model": "heuristc"}}},
            "config key 'morlaif.feedback.model': unknown feedback model 'heuristc' (did you mean 'heuristic'?)",
        ),
        ({"morlaif": {"judge": "gpt5"}}, "config key 'morlaif.judge': unknown judge 'gpt5' (did you mean 'gpt4'?)"),
        ({"mote": {"judge": "nope"}}, "config key 'mote.judge': unknown judge 'nope'. Available (evals.judges or"),
        (
            {"cut": {"eval": {"judge": {"open": "gtp4"}}}},
            "config key 'cut.eval.judge.open': unknown judge 'gtp4' (did you mean 'gpt4'?)",
        ),
        (
            {"cut": {"eval": {"judge": {"verifiable": "orcale"}}}},
            "config key 'cut.eval.judge.verifiable': unknown judge",
        ),
        ({"evals": {"cards": ["heuristic", "nope"]}}, "config key 'evals.cards[1]': unknown judge 'nope'"),
    ],
)
def test_unknown_names_fail_at_start_naming_the_key(user, message):
    with pytest.raises(ConfigError) as e:
        resolve_config({"tier": "ci", **user})
    assert message in str(e.value)


def test_api_model_names_are_not_registry_references():
    cfg = resolve_config({"tier": "ci", "evals": {"judge": "gpt4"}})  # openai `model: gpt-4-0613` is the API's name
    assert cfg["evals"]["judges"]["gpt4"]["model"] == "gpt-4-0613"


# ----------------------------------------------------------------------------------------------- the YAML files
def test_duplicate_keys_are_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("tier: ci\ncut:\n  dpo: {beta: 0.1}\n  dpo: {beta: 0.3}\n")
    with pytest.raises(ConfigError) as e:
        load_yaml(path)
    assert str(path) in str(e.value) and "line 4" in str(e.value)
    assert "duplicate key 'dpo' (first given on line 3" in str(e.value)
    path.write_text("base: &b {x: 1}\nother:\n  <<: *b\n  x: 2\n")  # a YAML merge may override a merged key
    assert load_yaml(path)["other"] == {"x": 2}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tier: [ci\n", "not valid YAML"),
        ("- ci\n- tiny\n", "expected a mapping of config keys at the top level"),
        ("just a string\n", "got a str"),
    ],
)
def test_a_broken_config_file_is_named(tmp_path, text, expected):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_yaml(path)
    assert str(e.value).startswith(str(path)) and expected in str(e.value)
    assert isinstance(e.value, UserError)  # printed as one line by `python -m alignrepro...` steps


def test_every_config_file_is_read_strictly(tmp_path):
    for path in [*CONFIG_DIR.glob("*.yaml"), *CONFIG_DIR.glob("tiers/*.yaml")]:
        load_yaml(path)  # the shipped files have no duplicate keys
    shutil.copytree(CONFIG_DIR, tmp_path / "config")
    defaults = tmp_path / "config" / "defaults.yaml"
    defaults.write_text(defaults.read_text() + "seed: 7\n")  # a second `seed:` at the end used to win silently
    with pytest.raises(ConfigError, match=r"defaults.yaml, line \d+, column 1: not valid YAML: duplicate key 'seed'"):
        resolve_config({"tier": "ci"}, config_dir=tmp_path / "config")


def _snakemake(tmp_path, snakefile, *args):
    cmd = [str(SNAKEMAKE), "-n", "-s", str(snakefile), "--directory", str(tmp_path / "work"), *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return res.returncode, res.stdout + res.stderr


def test_snakemake_reports_a_duplicate_key_in_a_configfile(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tier: ci\npapers: [cut]\ntier: tiny\n")  # Snakemake's loader would take `tiny` silently
    rc, out = _snakemake(tmp_path, REPO / "Snakefile", "--configfile", str(bad))
    assert rc != 0
    assert f"{bad}, line 3, column 1: not valid YAML: duplicate key 'tier'" in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tier: ci\ntier: tiny\n", "line 2, column 1: not valid YAML: duplicate key 'tier'"),
        ("tier: [ci\n", "not valid YAML"),
        ("- tier\n", "expected a mapping of config keys at the top level"),
    ],
)
def test_snakemake_names_a_broken_config_yaml(tmp_path, text, expected):
    # Snakemake reads config/config.yaml (`configfile:`) with its own loader, whose messages name no file: a copy
    # of the Snakefile beside a broken config/config.yaml stands for the user's checkout
    wf = tmp_path / "wf"
    (wf / "config").mkdir(parents=True)
    shutil.copy(REPO / "Snakefile", wf / "Snakefile")
    (wf / "config" / "config.yaml").write_text(text)
    rc, out = _snakemake(tmp_path, wf / "Snakefile")
    assert rc != 0
    assert f"{wf / 'config' / 'config.yaml'}" in out and expected in out


# ---------------------------------------------------------------------------------------------------------- dtype
def test_each_tier_sets_its_own_dtype():
    # `auto` picked bf16 only on CPUs with native bf16: the tiny tier's numbers depended on the machine
    expected = {"ci": "float32", "tiny": "float32", "full": "bfloat16"}
    for tier, dtype in expected.items():
        assert load_yaml(CONFIG_DIR / "tiers" / f"{tier}.yaml")["dtype"] == dtype
        assert resolve_config({"tier": tier})["dtype"] == dtype
    with pytest.raises(ConfigError, match=r"config key 'dtype': 'auto' is not one of \['float32', 'bfloat16'\]"):
        resolve_config({"tier": "tiny", "dtype": "auto"})
    assert resolve_config({"tier": "tiny", "dtype": "bfloat16"})["dtype"] == "bfloat16"  # an explicit opt-in
