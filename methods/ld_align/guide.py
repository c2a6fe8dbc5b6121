"""LD-Align's guide model: the latent space whose distances weight SPIN's pairs (paper note §1 steps 2 and 4).

Encoder φ(x, y) = a frozen sentence encoder (methods/ld_align/encoder.py), centred and scaled by its training-set
statistics, then a trainable linear projection to `latent_dim`. Decoder ψ = the frozen base causal LM reading
`prefix_tokens` soft-prefix vectors (a trainable linear map of z) before the prompt and the response; trained by
teacher-forced cross-entropy on the response tokens only. The distance of a pair is ‖φ(x, y_real) − φ(x, y_gen)‖₂.

A guide folder holds guide.safetensors (the trainable weights and the centring statistics) and guide.json (encoder
spec and fingerprint, decoder identity, settings, loss per step, data sha256, and the files manifest, written last).

  python -m alignrepro.methods.ld_align.guide train --decoder DIR --texts T.jsonl --encoder-json SPEC \\
      --config-json CFG --out DIR --tier T --seed N
  python -m alignrepro.methods.ld_align.guide distances (--guide DIR | --encoder-json SPEC --policy DIR) \\
      --pairs P.jsonl --out D.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from alignrepro.errors import IntegrityError, TrainingDiverged, UserError
from alignrepro.integrity import file_manifest
from alignrepro.io import atomic_write_json, read_json, sha256_file, sha256_text, write_jsonl
from alignrepro.methods.ld_align.encoder import (  # noqa: F401  (distances: this module's public API too)
    SEPARATOR,
    TRAINABLE_SOURCES,
    LatentSpace,
    distance_rows,
    distances,
    encoder_space,
    json_arg,
    load_encoder,
    read_rows,
    resolve_spec,
    truncate_response,
)
from alignrepro.models import choose_dtype, load_model, load_tokenizer, model_identity
from alignrepro.provenance import provenance
from alignrepro.training import merge_settings

log = logging.getLogger(__name__)
GUIDE_JSON = "guide.json"
WEIGHTS = "guide.safetensors"
DEFAULTS: dict[str, Any] = {
    "latent_dim": 64,
    "prefix_tokens": 4,
    "max_response_tokens": 128,  # the generation budget: both sides of a distance are cut to it (§7.4)
    "max_length": 256,  # decoder prompt + response tokens (the prompt is cut from the left to fit)
    "epochs": 2,
    "learning_rate": 1e-3,
    "batch_size": 8,
    "weight_decay": 0.0,
    "dtype": "float32",
    "distance_batch_size": 32,
}


def guide_settings(cfg: dict[str, Any] | None, where: str = "ld_align guide config") -> dict[str, Any]:
    """Flat settings from the config's guide section: its `train` sub-dict is merged in; `encoder` (given apart, see
    train_guide) and `data` (which texts the workflow assembled) are not settings of this step."""
    cfg = {k: v for k, v in (cfg or {}).items() if k not in ("encoder", "data", "train")} | dict(
        (cfg or {}).get("train") or {}
    )
    s = merge_settings(DEFAULTS, cfg, where)
    for key in ("latent_dim", "prefix_tokens", "max_response_tokens", "max_length", "epochs", "batch_size"):
        if not isinstance(s[key], int) or s[key] < 1:
            raise UserError(f"{where}: {key} = {s[key]!r}; expected a positive integer")
    if s["max_length"] < s["max_response_tokens"] + 2:
        raise UserError(f"{where}: max_length {s['max_length']} leaves no room for a prompt after max_response_tokens")
    return s


class Projection(torch.nn.Module):
    """z = W (e − centre) / scale. The centring and scalar scale (training-set statistics) do not change distances'
    ratios; they give z unit-sized variation at initialisation, so the decoder sees the latent from step one."""

    def __init__(self, encoder_dim: int, latent_dim: int):
        super().__init__()
        self.linear = torch.nn.Linear(encoder_dim, latent_dim, bias=False)
        self.register_buffer("center", torch.zeros(encoder_dim))
        self.register_buffer("scale", torch.ones(()))

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return self.linear((e - self.center) / self.scale)


class Guide:
    """Encoder φ (frozen encoder + `trainable.projection`) and decoder ψ (frozen LM + `trainable.prefix`)."""

    def __init__(self, decoder_dir, encoder_spec: dict[str, Any], settings: dict[str, Any], hidden: int | None = None):
        self.decoder_dir, self.settings, self.meta = Path(decoder_dir), settings, None
        self.tokenizer = load_tokenizer(decoder_dir, padding_side="right")
        self.encoder = load_encoder(encoder_spec, tokenizer_dir=decoder_dir)
        self._lm = None  # loaded on first use: distances need only the encoder and the tokenizer
        hidden = hidden or self.lm.config.hidden_size
        self.trainable = torch.nn.ModuleDict(
            {
                "projection": Projection(self.encoder.dim, settings["latent_dim"]),
                "prefix": torch.nn.Linear(settings["latent_dim"], settings["prefix_tokens"] * hidden),
            }
        )
        self.space = LatentSpace(self.encoder, self.tokenizer, settings["max_response_tokens"], self.projection)

    @property
    def projection(self) -> Projection:
        return self.trainable["projection"]

    @property
    def lm(self):
        if self._lm is None:
            self._lm = load_model(self.decoder_dir, dtype=choose_dtype(self.settings["dtype"])).eval()
            self._lm.requires_grad_(False)
        return self._lm

    def init_weights(self, seed: int, embeddings: torch.Tensor) -> None:
        """Seeded: projection N(0, 1); prefix = mean token embedding + z-dependent noise of the embeddings' scale."""
        g = torch.Generator().manual_seed(seed)
        table = self.lm.get_input_embeddings().weight.detach().float()
        with torch.no_grad():
            self.projection.center.copy_(embeddings.mean(0))
            self.projection.scale.copy_((embeddings - embeddings.mean(0)).norm(dim=1).mean().clamp(min=1e-6))
            w = self.projection.linear.weight
            w.copy_(torch.randn(w.shape, generator=g))
            prefix = self.trainable["prefix"]
            prefix.weight.copy_(
                torch.randn(prefix.weight.shape, generator=g) * table.std() / self.settings["latent_dim"] ** 0.5
            )
            prefix.bias.copy_(table.mean(0).repeat(self.settings["prefix_tokens"]))

    def sequence(self, prompt: str, response: str) -> tuple[list[int], int]:
        """(decoder token ids of prompt + separator + truncated response + eos, number of prompt tokens)."""
        tok, s = self.tokenizer, self.settings
        resp, _ = truncate_response(tok, response, s["max_response_tokens"])
        r = tok(resp, add_special_tokens=False)["input_ids"][: s["max_response_tokens"]] + [tok.eos_token_id]
        p = tok(prompt + SEPARATOR, add_special_tokens=False)["input_ids"][-(s["max_length"] - len(r)) :]
        return p + r, len(p)

    def nll(self, seqs: list[tuple[list[int], int]], z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed response-token NLL per example, response-token count per example), teacher-forced given z."""
        lm, k = self.lm, self.settings["prefix_tokens"]
        b, t = len(seqs), max(len(s) for s, _ in seqs)
        ids = torch.full((b, t), self.tokenizer.pad_token_id)
        labels = torch.full((b, k + t), -100)
        mask = torch.zeros(b, k + t, dtype=torch.long)
        mask[:, :k] = 1
        for i, (s, n_prompt) in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, k : k + len(s)] = 1
            labels[i, k + n_prompt : k + len(s)] = torch.tensor(s[n_prompt:])
        emb = lm.get_input_embeddings()(ids)
        prefix = self.trainable["prefix"](z).view(b, k, -1).to(emb.dtype)
        hidden = lm.base_model(inputs_embeds=torch.cat([prefix, emb], 1), attention_mask=mask).last_hidden_state
        target = labels[:, 1:]
        sel = target != -100
        # the LM head only where a response token is predicted: most of a long prompt costs no vocabulary matmul
        logits = lm.get_output_embeddings()(hidden[:, :-1][sel]).float()
        token_nll = F.cross_entropy(logits, target[sel], reduction="none")
        rows = torch.arange(b).unsqueeze(1).expand_as(sel)[sel]
        return torch.zeros(b).index_add(0, rows, token_nll), sel.sum(1)


# ---------------------------------------------------------------------------------------------------- training
def _rows_sha256(rows: list[dict[str, str]]) -> str:
    return sha256_text("".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows))


def train_guide(
    decoder_dir: str | Path,
    rows: list[dict[str, str]],
    encoder_spec: dict[str, Any],
    cfg: dict[str, Any] | None,
    out: str | Path,
    tier: str,
    seed: int,
) -> Guide:
    """Train φ's projection and ψ's prefix map on rows {"prompt", "response"}; save the guide folder to `out`."""
    settings = guide_settings(cfg)
    spec = resolve_spec(encoder_spec)
    if (cfg or {}).get("encoder") not in (None, encoder_spec) and resolve_spec(cfg["encoder"]) != spec:
        raise UserError(f"config field 'encoder' {cfg['encoder']} differs from the encoder spec given {encoder_spec}")
    if spec["source"] not in TRAINABLE_SOURCES:
        raise UserError(f"encoder source {spec['source']!r} trains nothing; a guide takes {list(TRAINABLE_SOURCES)}")
    if not rows:
        raise UserError("no training texts: a guide needs at least one {prompt, response} row")
    torch.manual_seed(seed)
    start = time.perf_counter()
    guide = Guide(decoder_dir, spec, settings)
    prompts, responses = [r["prompt"] for r in rows], [r["response"] for r in rows]
    emb, _ = guide.space.embed(prompts, responses, settings["distance_batch_size"])  # frozen: computed once
    guide.init_weights(seed, emb)
    seqs = [guide.sequence(p, r) for p, r in zip(prompts, responses, strict=True)]
    embed_s = time.perf_counter() - start
    params = [p for p in guide.trainable.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=settings["learning_rate"], weight_decay=settings["weight_decay"])
    g = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    epoch_means: list[float] = []
    t0 = time.perf_counter()
    for epoch in range(settings["epochs"]):
        order = torch.randperm(len(rows), generator=g).tolist()
        epoch_losses = []
        for i in range(0, len(order), settings["batch_size"]):
            idx = order[i : i + settings["batch_size"]]
            total, count = guide.nll([seqs[j] for j in idx], guide.projection(emb[idx]))
            loss = total.sum() / count.sum().clamp(min=1)  # mean over the batch's response tokens
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"ld_align guide: loss {loss.item()} at step {len(losses) + 1}; nothing saved")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            epoch_losses.append(loss.item())
            if len(losses) % 10 == 0:
                log.info("step %d epoch %d loss %.4f", len(losses), epoch, loss.item())
        epoch_means.append(sum(epoch_losses) / len(epoch_losses))
    train_s = time.perf_counter() - t0
    record = {
        "tier": tier,
        "seed": seed,
        "data": {"n": len(rows), "sha256": _rows_sha256(rows)},
        "training": {
            "steps": len(losses),
            "loss_per_step": losses,
            "loss_per_epoch": epoch_means,
            "final_loss": epoch_means[-1],  # mean over the last epoch's steps (no extra pass over the data)
        },
        "timing": {"embed_s": embed_s, "train_s": train_s, "seconds_per_step": train_s / max(len(losses), 1)},
        "provenance": provenance(tier=tier, config=settings, seed=seed),
    }
    save_guide(guide, out, record)
    return guide


def save_guide(guide: Guide, out: str | Path, record: dict[str, Any]) -> dict[str, Any]:
    from safetensors.torch import save_file

    out = Path(out)
    for p in guide.trainable.parameters():
        if not torch.isfinite(p).all():
            raise TrainingDiverged("ld_align guide: a trainable weight is not finite; no guide was written")
    out.mkdir(parents=True, exist_ok=True)
    (out / GUIDE_JSON).unlink(missing_ok=True)  # first: a half-rewritten folder never looks finished
    tensors = {k: v.detach().contiguous().float() for k, v in guide.trainable.state_dict().items()}
    save_file(tensors, str(out / WEIGHTS), metadata={"format": "pt"})
    meta = {
        "kind": "ld_align_guide",
        "format": 1,
        "encoder": guide.encoder.spec,
        "encoder_dim": guide.encoder.dim,
        "encoder_fingerprint": guide.encoder.fingerprint(),
        "decoder": str(guide.decoder_dir),
        "decoder_identity": model_identity(guide.decoder_dir),
        "settings": guide.settings,
        **record,
        "files": file_manifest(out, (WEIGHTS,)),
    }
    atomic_write_json(out / GUIDE_JSON, meta)  # last: its presence means the guide is complete
    return meta


def verify_guide_dir(guide_dir: str | Path, meta: dict[str, Any]) -> None:
    """IntegrityError naming every file of the folder that differs from guide.json's manifest."""
    found = []
    for rel, want in (meta.get("files") or {}).items():
        path = Path(guide_dir) / rel
        if not path.is_file():
            found.append(f"{path}: missing (guide.json records {want['size']} bytes)")
        elif path.stat().st_size != want["size"]:
            found.append(f"{path}: {path.stat().st_size} bytes, guide.json records {want['size']}")
        elif sha256_file(path) != want["sha256"]:  # guide weights are small: always hashed
            found.append(f"{path}: sha256 differs from the one guide.json records (corrupted or replaced)")
    if found:
        raise IntegrityError(
            "guide files differ from guide.json: " + "; ".join(found) + f" (retrain: --forcerun {guide_dir}/guide.json)"
        )


def load_guide(guide_dir: str | Path, decoder: str | Path | None = None) -> Guide:
    """A trained guide, after checking its files, its decoder's identity and its frozen encoder's fingerprint.
    `decoder` overrides the recorded decoder folder (a moved results tree); its identity must still match."""
    from safetensors.torch import load_file

    path = Path(guide_dir) / GUIDE_JSON
    if not path.is_file():
        raise UserError(f"{path}: missing: {guide_dir} is not a finished guide folder (train writes it last)")
    try:
        meta = read_json(path)
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(meta, dict) or meta.get("kind") != "ld_align_guide":
        raise UserError(f"{path}: field 'kind' is not 'ld_align_guide'")
    verify_guide_dir(guide_dir, meta)
    decoder = Path(decoder or meta["decoder"])
    if model_identity(decoder) != meta["decoder_identity"]:
        raise IntegrityError(f"{path}: decoder {decoder} is not the model the guide was trained with")
    settings = guide_settings(meta["settings"], f"{path}: settings")
    tensors = load_file(str(Path(guide_dir) / WEIGHTS))
    guide = Guide(decoder, meta["encoder"], settings, tensors["prefix.weight"].shape[0] // settings["prefix_tokens"])
    if guide.encoder.fingerprint() != meta["encoder_fingerprint"]:
        raise IntegrityError(f"{path}: the frozen encoder's weights differ from encoder_fingerprint (another torch?)")
    guide.trainable.load_state_dict(tensors)
    guide.meta = meta
    return guide


# ---------------------------------------------------------------------------------------------------- using it
@torch.no_grad()
def reconstruction_nll(
    guide: Guide, prompts: list[str], responses: list[str], latents: torch.Tensor, batch_size: int | None = None
) -> list[float]:
    """Mean NLL per response token of each (truncated) response, decoded from the given latents [N, latent_dim]."""
    bs = batch_size or guide.settings["batch_size"]
    seqs = [guide.sequence(p, r) for p, r in zip(prompts, responses, strict=True)]
    out: list[float] = []
    for i in range(0, len(seqs), bs):
        total, count = guide.nll(seqs[i : i + bs], latents[i : i + bs])
        out += (total / count.clamp(min=1)).tolist()
    return out


# ---------------------------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m alignrepro.methods.ld_align.guide", description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, help="torch threads (default: OMP_NUM_THREADS, which Snakemake sets)")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train the guide (projection + prefix map) and write its folder")
    t.add_argument("--decoder", type=Path, required=True, help="base model folder (model.json): the frozen decoder")
    t.add_argument("--texts", type=Path, required=True, help='JSONL of {"prompt", "response"} rows')
    t.add_argument("--encoder-json", required=True, help='encoder spec, e.g. {"source": "minilm_wheel"}')
    t.add_argument("--config-json", default="{}", help=f"guide settings over the defaults {json.dumps(DEFAULTS)}")
    t.add_argument("--out", type=Path, required=True, help="guide folder (guide.safetensors, guide.json)")
    t.add_argument("--tier", required=True)
    t.add_argument("--seed", type=int, required=True)
    d = sub.add_parser("distances", help="latent distances of (real, generated) pairs")
    src = d.add_mutually_exclusive_group(required=True)
    src.add_argument("--guide", type=Path, help="a trained guide folder")
    src.add_argument("--encoder-json", help='an encoder without a trained projection, e.g. {"source": "raw"}')
    d.add_argument(
        "--policy",
        type=Path,
        help="with --encoder-json: model folder whose tokenizer sets the truncation "
        "budget and, for source policy, whose hidden states are the latent",
    )
    d.add_argument(
        "--max-response-tokens",
        type=int,
        default=DEFAULTS["max_response_tokens"],
        help="with --encoder-json: token budget of both responses (a guide records its own)",
    )
    d.add_argument("--pairs", type=Path, required=True, help='JSONL of {"id", "prompt", "real", "generated"} rows')
    d.add_argument("--out", type=Path, required=True, help='JSONL of {"id", "distance", "len_real", "len_generated"}')
    d.add_argument("--batch-size", type=int, default=DEFAULTS["distance_batch_size"])
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cmd == "train":
        rows = read_rows(args.texts, ("prompt", "response"))
        spec = json_arg(args.encoder_json, "--encoder-json")
        train_guide(
            args.decoder, rows, spec, json_arg(args.config_json, "--config-json"), args.out, args.tier, args.seed
        )
        return
    pairs = read_rows(args.pairs, ("id", "prompt", "real", "generated"))
    if args.guide is not None:
        space: Guide | LatentSpace = load_guide(args.guide)
    else:
        if args.policy is None:
            raise UserError("distances --encoder-json needs --policy DIR (its tokenizer sets the truncation budget)")
        space = encoder_space(json_arg(args.encoder_json, "--encoder-json"), args.policy, args.max_response_tokens)
    start = time.perf_counter()
    rows = distance_rows(space, pairs, args.batch_size)
    if not all(math.isfinite(r["distance"]) for r in rows):
        raise UserError(f"{args.pairs}: a distance is not finite (a broken encoder or guide?)")
    write_jsonl(args.out, rows)
    log.info("%d distances in %.1f s -> %s", len(rows), time.perf_counter() - start, args.out)


if __name__ == "__main__":
    main()
