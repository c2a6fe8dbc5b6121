"""LAB's phased training: phase data (Table 1 with replay, stacked), the median split, a constant learning rate after
warm-up, one model folder per epoch (and resume after a kill), checkpoint selection, the held-out NLL scorer."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from transformers import TrainerCallback

from alignrepro.errors import UserError
from alignrepro.integrity import scan_models
from alignrepro.io import read_json, read_jsonl, write_jsonl
from alignrepro.methods.lab import phases as P
from alignrepro.methods.lab import select as S
from alignrepro.methods.lab import train as T
from alignrepro.models import load_model, model_identity, read_model_meta

pytestmark = pytest.mark.usefixtures("one_torch_thread")
LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj", "gate_proj", "up_proj"]}
TRAIN = {
    "learning_rate": 1e-2,
    "lr_scheduler": "constant_with_warmup",
    "epochs": 2,
    "per_device_batch_size": 2,
    "grad_accum": 1,
    "max_length": 64,
    "save_steps": 100,
    "warmup_ratio": 0.34,  # ceil(0.34 * 6 steps) = 3 warm-up steps
    "seed": 0,
    "lora": LORA,
}
CFG = {"train": TRAIN, "dtype": "float32"}


def rec(rid: str, kind: str, answer: str, question: str = "what is the answer") -> dict:
    msgs = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": question},
        {"role": "assistant", "content": answer},
    ]
    return {"id": rid, "kind": kind, "leaf": kind, "messages": msgs}


def words(n: int) -> str:
    return " ".join(["word"] * n)


RECORDS = [
    rec("k1", "knowledge", words(1)),
    rec("k2", "knowledge", words(2)),
    rec("k3", "knowledge", words(3)),
    rec("k4", "knowledge", words(5)),
    rec("k5", "knowledge", words(8)),
    rec("f1", "foundational", words(1)),
    rec("f2", "foundational", words(9)),
    rec("s1", "freeform_skill", words(2)),
    rec("g1", "grounded_skill", words(4)),
]


def n_words(text: str) -> int:
    return len(text.split())


# ------------------------------------------------------------------------------------------------ phase data
def test_phase_unions_with_full_replay():
    plan = P.assign_phases(RECORDS, n_words)
    assert plan["threshold"] == 3  # median of 1, 2, 3, 5, 8
    assert plan["ids"]["kt1"] == ["k1", "k2", "k3"]
    assert plan["ids"]["kt2"] == sorted({"k4", "k5", "f1", "f2"} | {"k1", "k2", "k3"})
    assert plan["ids"]["st"] == sorted({"s1", "g1"} | {"k1", "k2", "k3"} | {"k4", "k5", "f1", "f2"})
    assert plan["ids"]["stacked"] == sorted(r["id"] for r in RECORDS)
    assert plan["replay"]["kt2"] == {"kt1": ["k1", "k2", "k3"]}
    assert plan["replay"]["st"] == {"kt1": ["k1", "k2", "k3"], "kt2": ["f1", "f2", "k4", "k5"]}


def test_median_split_ties_and_threshold():
    lengths = {"a": 1, "b": 2, "c": 3, "d": 4}  # even count: median 2.5
    recs = [rec(i, "knowledge", words(n)) for i, n in lengths.items()] + [
        rec("s", "freeform_skill", "x"),
        rec("f", "foundational", "x"),
    ]
    plan = P.assign_phases(recs, n_words)
    assert plan["threshold"] == 2.5 and plan["own"]["kt1"] == ["a", "b"]
    tied = [rec(f"t{i}", "knowledge", words(n)) for i, n in enumerate([2, 2, 2, 5])] + recs[-2:]
    plan = P.assign_phases(tied, n_words)  # median 2: answers at the median are short
    assert plan["threshold"] == 2 and plan["own"]["kt1"] == ["t0", "t1", "t2"]
    assert P.assign_phases(recs, n_words, split=3)["own"]["kt1"] == ["a", "b", "c"]
    assert P.assign_phases(recs, n_words, split="1")["own"]["kt1"] == ["a"]
    with pytest.raises(UserError, match="split"):
        P.assign_phases(recs, n_words, split="mean")


def test_partial_replay_is_a_seeded_subset():
    plan = P.assign_phases(RECORDS, n_words, replay_fraction=0.5, seed=3)
    again = P.assign_phases(RECORDS, n_words, replay_fraction=0.5, seed=3)
    assert plan == again
    assert len(plan["replay"]["kt2"]["kt1"]) == 2 and set(plan["replay"]["kt2"]["kt1"]) <= {"k1", "k2", "k3"}
    assert len(plan["replay"]["st"]["kt2"]) == 2 and set(plan["replay"]["st"]["kt2"]) <= {"k4", "k5", "f1", "f2"}
    for phase in P.PHASES:
        replayed = {i for ids in plan["replay"][phase].values() for i in ids}
        assert plan["ids"][phase] == sorted(set(plan["own"][phase]) | replayed)
    assert P.assign_phases(RECORDS, n_words, replay_fraction=0.0)["ids"]["st"] == ["g1", "s1"]


def test_bad_inputs_fail_naming_the_problem(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_jsonl(a, RECORDS[:2])
    write_jsonl(b, RECORDS[1:3])
    with pytest.raises(UserError, match="'k2'.*also in"):
        P.load_records([a, b])
    write_jsonl(b, [{**RECORDS[0], "id": "z", "kind": "skill"}])
    with pytest.raises(UserError, match="kind 'skill'"):
        P.load_records([b])
    with pytest.raises(UserError, match="phase ST has no data"):
        P.assign_phases([r for r in RECORDS if r["kind"] not in ("freeform_skill", "grounded_skill")], n_words)


def test_write_phases_files_are_the_exact_unions(ci_model, tmp_path):
    write_jsonl(tmp_path / "sdg.jsonl", [r for r in RECORDS if r["kind"] != "foundational"])
    write_jsonl(tmp_path / "found.jsonl", [r for r in RECORDS if r["kind"] == "foundational"])
    out = tmp_path / "phases"
    man = P.main(
        [
            "--records",
            str(tmp_path / "sdg.jsonl"),
            str(tmp_path / "found.jsonl"),
            "--tokenizer-model",
            str(ci_model),
            "--out",
            str(out),
        ]
    )
    counter = P.token_counter(ci_model)
    lengths = {r["id"]: counter(r["messages"][-1]["content"]) for r in RECORDS if r["kind"] == "knowledge"}
    thr = man["split"]["threshold_tokens"]
    short = {i for i, n in lengths.items() if n <= thr}
    kt2_own = {i for i in lengths if i not in short} | {"f1", "f2"}
    expected = {
        "kt1": short,
        "kt2": kt2_own | short,
        "st": {"s1", "g1"} | kt2_own | short,
        "stacked": {r["id"] for r in RECORDS},
    }
    for phase, ids in expected.items():
        rows = read_jsonl(out / f"{phase}.jsonl")
        got = [r["id"] for r in rows]
        assert len(got) == len(set(got)) and set(got) == ids, phase
        assert man["phases"][phase]["ids"] == sorted(ids) and man["phases"][phase]["count"] == len(ids)
    assert read_json(out / "manifest.json")["split"]["threshold_tokens"] == thr
    st = {r["id"]: r["source_phase"] for r in read_jsonl(out / "st.jsonl")}
    assert st["s1"] == "st" and all(st[i] == "kt1" for i in short)


# ------------------------------------------------------------------------------------------------ training
def train_rows(n: int = 6) -> list[dict]:
    return [rec(f"r{i}", "knowledge", f"the answer is {i * 7} apples", f"how many apples {i}") for i in range(n)]


def test_knowledge_phases_first_then_the_rest_from_the_same_plan(ci_model, tmp_path):
    # the workflow writes KT/1 and KT/2 from the knowledge records alone (they train while the skills leaves are
    # generated); the full step writes ST and the stacked set and checks the knowledge phases came out the same
    knowledge = [r for r in RECORDS if r["kind"] == "knowledge"]
    write_jsonl(tmp_path / "k.jsonl", knowledge)
    write_jsonl(tmp_path / "all.jsonl", [r for r in RECORDS if r["kind"] != "foundational"])
    write_jsonl(tmp_path / "found.jsonl", [r for r in RECORDS if r["kind"] == "foundational"])
    out, whole = tmp_path / "phases", tmp_path / "whole"
    first = P.write_phases([tmp_path / "k.jsonl", tmp_path / "found.jsonl"], ci_model, out, knowledge_only=True)
    assert sorted(p.name for p in out.iterdir()) == ["knowledge.json", "kt1.jsonl", "kt2.jsonl"]
    kt_bytes = {p: (out / f"{p}.jsonl").read_bytes() for p in ("kt1", "kt2")}
    man = P.write_phases([tmp_path / "all.jsonl", tmp_path / "found.jsonl"], ci_model, out,
                         knowledge_manifest=out / "knowledge.json")  # fmt: skip
    alone = P.write_phases([tmp_path / "all.jsonl", tmp_path / "found.jsonl"], ci_model, whole)  # one step, as before
    assert {p: (out / f"{p}.jsonl").read_bytes() for p in ("kt1", "kt2")} == kt_bytes  # not written again
    for phase in ("kt1", "kt2", "st", "stacked"):
        assert (out / f"{phase}.jsonl").read_bytes() == (whole / f"{phase}.jsonl").read_bytes(), phase
        assert man["phases"][phase] == alone["phases"][phase], phase
    assert first["phases"]["kt1"] == man["phases"]["kt1"] and man["split"] == alone["split"]
    write_jsonl(tmp_path / "fewer.jsonl", [r for r in RECORDS if r["kind"] != "foundational" and r["id"] != "k5"])
    with pytest.raises(UserError, match="KT/.'s records differ"):
        P.write_phases([tmp_path / "fewer.jsonl", tmp_path / "found.jsonl"], ci_model, tmp_path / "x",
                       knowledge_manifest=out / "knowledge.json")  # fmt: skip


@pytest.fixture(scope="module")
def phase_run(ci_model, tmp_path_factory, one_torch_thread):
    root = tmp_path_factory.mktemp("lab_phase")
    write_jsonl(root / "kt1.jsonl", train_rows())
    doc = T.main(
        [
            "--start-model",
            str(ci_model),
            "--data",
            str(root / "kt1.jsonl"),
            "--config-json",
            json.dumps(CFG),
            "--phase",
            "kt1",
            "--name",
            "lab-ci-kt1",
            "--tier",
            "ci",
            "--out",
            str(root / "kt1"),
        ]
    )
    return root, doc


def test_learning_rate_is_constant_after_warmup(phase_run):
    _, doc = phase_run
    lrs, peak = doc["learning_rates"], TRAIN["learning_rate"]
    assert doc["total_steps"] == 6 and doc["warmup_steps"] == 3 and len(lrs) == 6
    assert lrs[:3] == pytest.approx([0.0, peak / 3, 2 * peak / 3])  # linear warm-up
    assert lrs[3:] == [peak] * 3  # then exactly constant: no decay


def test_one_loadable_model_folder_per_epoch(phase_run, ci_model):
    root, doc = phase_run
    assert [e["dir"] for e in doc["epochs"]] == ["epoch1", "epoch2"]
    assert [e["global_step"] for e in doc["epochs"]] == [3, 6]
    assert not (root / "kt1" / "checkpoints").exists()
    weights = []
    for e in doc["epochs"]:
        meta = read_model_meta(root / "kt1" / e["dir"])
        assert meta["kind"] == "lora" and meta["epoch"] == e["epoch"] and meta["base"] == str(ci_model)
        weights.append(load_model(root / "kt1" / e["dir"]).model.layers[0].self_attn.q_proj.weight)
    assert not torch.equal(weights[0], weights[1])


def test_loss_is_on_the_answer_only(ci_model):
    from alignrepro.models import load_tokenizer
    from alignrepro.training import TrainSettings, trainer_kwargs

    tok = load_tokenizer(ci_model, padding_side="right")
    settings = TrainSettings.from_dict(TRAIN)
    rows = P.completion_rows(train_rows(1)[0])
    kwargs = trainer_kwargs(settings, ci_model.parent / "unused", 1, torch.float32, "t", use_wandb=False)
    trainer = T.build_trainer(load_model(ci_model), tok, rows, settings, kwargs)
    ex = trainer.train_dataset[0]
    trained = [t for t in ex["labels"] if t != -100]
    assert tok.decode(trained) == "the answer is 0 apples<|im_end|>\n"


@pytest.mark.parametrize("save_steps, kill_at, resumed_at", [(100, 4, 3), (2, 5, 4)])
def test_resume_after_a_kill_keeps_finished_epochs(phase_run, ci_model, tmp_path, save_steps, kill_at, resumed_at):
    class Kill(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == kill_at:
                raise KeyboardInterrupt

    root, doc = phase_run
    out = tmp_path / "kt1"
    (out / "epoch2").mkdir(parents=True)  # a stale folder of another run must go
    kw = {"name": "lab-ci-kt1", "tier": "ci", "phase": "kt1"}
    cfg = copy.deepcopy(CFG)
    cfg["train"]["save_steps"] = save_steps
    with pytest.raises(KeyboardInterrupt):
        T.run_phase(ci_model, root / "kt1.jsonl", cfg, out, callbacks=(Kill(),), **kw)
    assert (out / "epoch1" / "model.json").is_file() and not (out / "epoch2").exists()
    assert (out / "checkpoints" / f"checkpoint-{resumed_at}").is_dir() and not (out / "phase.json").exists()
    resumed = T.run_phase(ci_model, root / "kt1.jsonl", cfg, out, **kw)
    assert resumed["resumed_from"].endswith(f"checkpoint-{resumed_at}")
    assert resumed["learning_rates"] == doc["learning_rates"]
    for e in (1, 2):  # the same weights as the run that was never killed
        a = load_model(out / f"epoch{e}").model.layers[0].self_attn.q_proj.weight
        b = load_model(root / "kt1" / f"epoch{e}").model.layers[0].self_attn.q_proj.weight
        torch.testing.assert_close(a, b)


def test_full_fine_tuning_epochs_and_selected_reference(ci_model, tmp_path):
    write_jsonl(tmp_path / "d.jsonl", train_rows(4))
    cfg = {"train": {**TRAIN, "lora": None, "learning_rate": 1e-3, "warmup_ratio": 0.25}, "dtype": "float32"}
    T.run_phase(ci_model, tmp_path / "d.jsonl", cfg, tmp_path / "st", name="lab-ci-st", tier="ci", phase="st")
    doc = S.write_selection(tmp_path / "st", {1: 1.0, 2: 2.0}, "heldout_nll", higher_is_better=False)
    assert doc["selected_epoch"] == 1
    sel = tmp_path / "st" / "selected"
    assert read_model_meta(sel)["kind"] == "base"
    a = load_model(sel).model.layers[0].mlp.up_proj.weight
    torch.testing.assert_close(a, load_model(tmp_path / "st" / "epoch1").model.layers[0].mlp.up_proj.weight)


# ------------------------------------------------------------------------------------------------ selection
@pytest.mark.parametrize(
    "scores, higher, tol, want",
    [
        ({1: 0.5, 2: 0.5}, True, 0.0, 1),  # a tie: the earlier checkpoint
        ({1: 0.5, 2: 0.6}, True, 0.0, 2),  # strictly better later: it wins
        ({1: 0.50, 2: 0.505, 3: 0.51}, True, 0.006, 2),  # the earliest within the tolerance of the best
        ({1: 0.5, 2: 0.505}, True, 0.01, 1),
        ({1: 2.0, 2: 1.5, 3: 1.5}, False, 0.0, 2),  # lower is better (NLL), tie -> earlier
        ({1: 2.0, 2: 2.5}, False, 0.0, 1),
    ],
)
def test_pick(scores, higher, tol, want):
    assert S.pick(scores, higher, tol) == want


def test_selected_reference_is_the_chosen_epoch(phase_run):
    root, _ = phase_run
    phase = root / "kt1"
    for scores, want in (({1: 0.4, 2: 0.4}, 1), ({1: 0.4, 2: 0.7}, 2)):
        doc = S.write_selection(phase, scores, "mmlu_branch_acc", higher_is_better=True)
        assert doc["selected_epoch"] == want and read_json(phase / "selected.json")["selected_dir"] == f"epoch{want}"
        meta = read_model_meta(phase / "selected")  # integrity: its manifest points at the epoch's files
        assert model_identity(phase / "selected") == model_identity(phase / f"epoch{want}")
        assert meta["selected_from"] == f"epoch{want}"
    with pytest.raises(UserError, match="epochs"):
        S.write_selection(phase, {1: 0.4}, "mmlu_branch_acc", higher_is_better=True)
    assert scan_models([root]) == ([], [])  # the workflow's start-up check: nothing broken, nothing orphaned


def test_next_phase_starts_from_the_selected_reference(phase_run, tmp_path):
    root, _ = phase_run
    S.write_selection(root / "kt1", {1: 0.1, 2: 0.9}, "mmlu_branch_acc", higher_is_better=True)
    write_jsonl(tmp_path / "kt2.jsonl", train_rows(2))
    cfg = {"train": {**TRAIN, "epochs": 1}, "dtype": "float32"}
    doc = T.run_phase(
        root / "kt1" / "selected",
        tmp_path / "kt2.jsonl",
        cfg,
        tmp_path / "kt2",
        name="lab-ci-kt2",
        tier="ci",
        phase="kt2",
    )
    meta = read_model_meta(tmp_path / "kt2" / "epoch1")
    assert meta["base"] == str(root / "kt1" / "selected")
    assert doc["start_identity"] == model_identity(root / "kt1" / "epoch2")
    assert model_identity(tmp_path / "kt2" / "epoch1")["base"] == model_identity(root / "kt1" / "epoch2")
    load_model(tmp_path / "kt2" / "epoch1")


def test_heldout_nll_drops_after_training(phase_run, ci_model):
    root, _ = phase_run
    rows = train_rows()
    base = S.heldout_nll(ci_model, rows, max_length=64)
    trained = S.heldout_nll(root / "kt1" / "epoch2", rows, max_length=64)
    assert base["tokens"] == trained["tokens"] > 0 and base["rows"] == 6
    assert trained["nll"] < base["nll"] - 0.1


def test_select_cli_with_heldout_nll(phase_run):
    root, _ = phase_run
    write_jsonl(root / "heldout.jsonl", train_rows(3))
    doc = S.main(["--phase-dir", str(root / "kt1"), "--heldout", str(root / "heldout.jsonl"), "--max-length", "64"])
    assert doc["metric"] == "heldout_nll" and not doc["higher_is_better"]
    assert doc["selected_epoch"] == S.pick({int(k): v for k, v in doc["scores"].items()}, False)


def test_a_phase_whose_answers_max_length_cuts_off_fails_naming_the_setting(ci_model, tmp_path):
    write_jsonl(tmp_path / "d.jsonl", train_rows(4))
    cfg = {"train": {**TRAIN, "max_length": 16}, "dtype": "float32"}  # shorter than every prompt
    with pytest.raises(UserError, match=r"d\.jsonl: every row's answer is cut off at train\.max_length 16"):
        T.run_phase(ci_model, tmp_path / "d.jsonl", cfg, tmp_path / "kt1", name="lab-ci-kt1", tier="ci", phase="kt1")


def test_length_grouped_batches_pad_less(ci_model):
    # lab.train.sampler: group_by_length (InstructLab batches by length): transformers' LengthGroupedSampler orders
    # the rows so that a batch holds similar lengths; at tiny it halved the ST phase's padded tokens
    from alignrepro.models import load_tokenizer
    from alignrepro.training import TrainSettings, trainer_kwargs

    tok = load_tokenizer(ci_model, padding_side="right")
    rows = [r for i in range(8) for r in P.completion_rows(rec(f"r{i}", "knowledge", words(1 + 30 * (i % 2))))]

    def padded(sampler: str) -> int:
        settings = TrainSettings.from_dict({**TRAIN, "sampler": sampler, "per_device_batch_size": 2})
        kwargs = trainer_kwargs(settings, ci_model.parent / "unused", len(rows), torch.float32, "t", use_wandb=False)
        trainer = T.build_trainer(load_model(ci_model), tok, rows, settings, kwargs)
        return sum(b["input_ids"].numel() for b in trainer.get_train_dataloader())

    assert padded("group_by_length") < padded("random")
    with pytest.raises(UserError, match="train.sampler"):
        TrainSettings.from_dict({**TRAIN, "sampler": "by_length"})
