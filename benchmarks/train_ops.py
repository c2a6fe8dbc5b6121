"""Training throughput: the project's SFT path (methods/cut/train.build_trainer on alignrepro.training's arguments,
the Hindsight row) and CUT's trainer, each against a raw TRL `SFTTrainer` with the same hyper-parameters written by
hand. Tokens/s counts every non-pad token a forward pass reads (CUT: the Align-P/Align-N row and its Misalign row);
the raw SFT for CUT trains on those very sequences as prompt/completion rows. Only `trainer.train()` is timed; every
run starts from a fresh copy of the base model with a fresh LoRA adapter."""

from __future__ import annotations

import copy
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.ops import INSTRUCTIONS
from benchmarks.stats import Sample, interleaved, rate_table, ratio

# The tiny tier's CUT training settings (methods/cut/config.yaml tiers.tiny.train), LoRA from the defaults.
TRAIN = {
    "learning_rate": 2.0e-3,
    "lr_scheduler": "cosine",
    "warmup_steps": None,
    "warmup_ratio": 0.1,
    "epochs": 1,
    "per_device_batch_size": 4,
    "grad_accum": 2,
    "max_length": 256,
    "save_steps": 4,
    "seed": 0,
    "load_in_8bit": False,
    "lora": {"r": 16, "alpha": 16, "dropout": 0.05, "target_modules": ["gate_proj", "up_proj", "down_proj"]},
}
CUT = {"threshold": 1.1, "weight_unlike": 1.0, "gamma": 0.0, "align_p_ratio": None, "keep_error_judgments": False}


def triplets(n: int, outputs: list[str]) -> list:
    """n judged records: every fourth a positive ("Perfect."), the others negatives with a critique (CUT's mix)."""
    from alignrepro.data.records import Record

    out = []
    for i in range(n):
        text = outputs[i % len(outputs)] or "I am not sure."
        judgment = "Perfect." if i % 4 == 0 else f"The answer misses part {i % 3 + 1} of the question and is too vague."
        out.append(Record(id=f"b{i}", instruction=INSTRUCTIONS[i % 16], output=text, judgment=judgment))
    return out


def _raw_sft(model, tok, rows: list[dict[str, str]], out: Path):
    """TRL's SFTTrainer as its documentation shows it, every setting that matters set to the project's values."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    t = TRAIN
    args = SFTConfig(
        output_dir=str(out),
        per_device_train_batch_size=t["per_device_batch_size"],
        gradient_accumulation_steps=t["grad_accum"],
        num_train_epochs=t["epochs"],
        learning_rate=t["learning_rate"],
        lr_scheduler_type=t["lr_scheduler"],
        warmup_steps=max(1, round(t["warmup_ratio"] * max(1, len(rows) // 8))),
        weight_decay=0.0,
        seed=t["seed"],
        bf16=False,
        use_cpu=True,
        gradient_checkpointing=False,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        max_length=t["max_length"],
        completion_only_loss=True,
        packing=False,
        disable_tqdm=True,
    )
    lora = t["lora"]
    peft = LoraConfig(
        r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"], target_modules=lora["target_modules"]
    )
    peft.task_type = "CAUSAL_LM"
    return SFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok, peft_config=peft
    )


def _project(row_name: str, base, tok, recs, out: Path):
    import torch

    from alignrepro.methods.cut.train import build_trainer
    from alignrepro.rows import paper_rows
    from alignrepro.training import DivergenceGuard, TrainSettings, trainer_kwargs

    row = paper_rows("cut")[row_name].public()
    settings = TrainSettings.from_dict(TRAIN, run=f"bench-{row_name}")
    kwargs = trainer_kwargs(settings, out, len(recs), torch.float32, run_name=f"bench-{row_name}", use_wandb=False)
    kwargs["disable_tqdm"] = True
    cfg = {"train": TRAIN, "cut": CUT, "dpo": {"beta": 0.1}}
    trainer, _ = build_trainer(row, base, tok, recs, {}, cfg, kwargs)
    trainer.add_callback(DivergenceGuard(row_name))
    return trainer


def _timed_train(make_trainer, tokens: int) -> Sample:
    trainer = make_trainer()
    wall, cpu = time.perf_counter(), time.process_time()
    result = trainer.train()
    return Sample(time.perf_counter() - wall, time.process_time() - cpu, tokens, result.training_loss)


def bench_training(model_dir: Path, outputs: list[str], n_triplets: int, repeats: int) -> dict[str, Any]:
    from transformers import set_seed

    from alignrepro.methods.cut.baseline_data import hindsight_rows
    from alignrepro.methods.cut.examples import build_cut_examples
    from alignrepro.methods.cut.templates import judge_prompt, plain_prompt
    from alignrepro.models import load_model, load_tokenizer

    logging.getLogger("transformers").setLevel(logging.ERROR)
    tok = load_tokenizer(model_dir, padding_side="right")
    set_seed(0)
    base = load_model(model_dir)
    recs = triplets(n_triplets, outputs)
    eos = tok.eos_token

    def n_tokens(rows: list[dict[str, str]]) -> int:
        return sum(min(TRAIN["max_length"], len(tok(r["prompt"] + r["completion"] + eos)["input_ids"])) for r in rows)

    sft_rows = hindsight_rows(recs)
    examples, _ = build_cut_examples(recs, tok, max_length=TRAIN["max_length"], align_p_ratio=None, seed=0)
    cut_tokens = sum(len(e["input_ids"]) + len(e["input_ids_neg"]) for e in examples)
    # The same sequences CUT reads, as SFT rows: Align-P (plain prompt), Align-N (judge prompt) and Misalign (plain).
    cut_rows = []
    for r in recs:
        if r.judgment.startswith("Perfect"):
            cut_rows.append({"prompt": plain_prompt(r.prompt_text), "completion": r.output})
        else:
            cut_rows.append({"prompt": judge_prompt(r.prompt_text, r.judgment), "completion": r.output})
            cut_rows.append({"prompt": plain_prompt(r.prompt_text), "completion": r.output})

    tmp = Path(tempfile.mkdtemp(prefix="alignrepro-bench-train-"))
    counter = iter(range(10**6))

    def fresh() -> Path:
        return tmp / f"run{next(counter)}"

    variants = {
        "project_sft": lambda: _timed_train(
            lambda: _project("hindsight", copy.deepcopy(base), tok, recs, fresh()), n_tokens(sft_rows)
        ),
        "raw_trl_sft": lambda: _timed_train(
            lambda: _raw_sft(copy.deepcopy(base), tok, sft_rows, fresh()), n_tokens(sft_rows)
        ),
        "cut_trainer": lambda: _timed_train(
            lambda: _project("cut", copy.deepcopy(base), tok, recs, fresh()), cut_tokens
        ),
        "raw_trl_sft_cut_rows": lambda: _timed_train(
            lambda: _raw_sft(copy.deepcopy(base), tok, cut_rows, fresh()), n_tokens(cut_rows)
        ),
    }
    try:
        series = interleaved(variants, repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # checkpoints of the runs
    return {
        "settings": {
            **{k: v for k, v in TRAIN.items() if k != "lora"},
            "triplets": n_triplets,
            "cut_examples": len(examples),
        },
        "unit": "tokens",
        "variants": rate_table(series, "tokens"),
        "ratio_project_sft_vs_raw": ratio(series["project_sft"], series["raw_trl_sft"]),
        "ratio_cut_vs_raw_sft": ratio(series["cut_trainer"], series["raw_trl_sft_cut_rows"]),
        "ratio_cut_vs_raw_sft_cpu": ratio(series["cut_trainer"], series["raw_trl_sft_cut_rows"], "cpu_s"),
        "train_loss_first": {k: s.samples[0].output for k, s in series.items()},
    }
