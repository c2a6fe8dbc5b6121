import pytest

from alignrepro.config import ConfigError, resolve_config


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


def test_judge_spec_is_replaced_whole_not_merged():
    ci = resolve_config({"tier": "ci"})
    # defaults.yaml has an openai judge with model/max_requests; ci's heuristic spec must not inherit them
    assert ci["cut"]["eval"]["judge"]["open"] == {"backend": "heuristic"}


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
