"""A small mixture of LoRA experts (PEFT has none): MoTE's step-routed experts and the gated LoRA-MoE baselines.

`apply_mote(model, cfg)` wraps every target `nn.Linear` (frozen) in a `MoTELinear` holding one LoRA per expert:

  routing "step" (MoTE, paper §3.2):  y = W0·x + α·E_step(x) + (1−α)·E_shared(x)     (shared expert on)
                                      y = W0·x + E_step(x)                             (shared expert off)
  routing "gate" (Table 4 baselines): y = W0·x + Σ_{e∈topk} g_e(x)·E_e(x)            (token-level softmax gate)

with E(x) = (lora_alpha/r)·B·A·dropout(x) per expert (each expert keeps its own LoRA scale; α is a separate mixing
weight, note §7.4). Step routing is hard and per token: a token goes to the expert of the step it belongs to; query
tokens go to ONE expert per sample — a random one in training (the collator draws it), E_analysis at inference
(note §7.3). There is no router and no balance loss. The "gate" mode is "Vanilla MoE"; with `contrastive_weight`
> 0 it is "token-gated LoRA-MoE + contrastive expert loss" (the paper's "MixLoRA" row, note §7.12): an InfoNCE
loss making each expert's low-rank codes A_e·x recognisable from the other experts' codes of the same tokens.

Routing: `with routing(model, step_ids): model(...)` — step_ids [B, T] of the tokens being fed, so KV-cache
decoding that feeds only new tokens passes only their step ids. The experts present in a batch run fused: every
one on every token in rank space, weighted per token (one-hot for hard routing), then one up-projection — exact,
and cheap next to W0 at LoRA ranks.

PEFT compatibility: `expert_as_peft(model, step)` gives a plain PEFT LoRA adapter (config + state dict) equal to
routing every token to that step (the shared expert folds in as extra rank); `merge_expert` returns a plain model.
No CLI.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alignrepro.io import atomic_write_json, read_json
from alignrepro.methods.mote.steps import STEP_IDS, load_step_token_state, merge_step_tokens, step_token_state

ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
CONFIG_NAME = "mote_config.json"
WEIGHTS_NAME = "mote_adapter.safetensors"


@dataclass
class MoTEConfig:
    r: int = 16
    lora_alpha: int = 32  # ours (2·r), note §1.3
    dropout: float = 0.05  # ours
    target_modules: tuple[str, ...] = ALL_LINEAR  # all linear layers of the block (paper: "all linear layers")
    experts: tuple[str, ...] = ("analysis", "guidance", "answer")
    shared_expert: bool = True
    mix_alpha: float = 0.5  # α, paper
    routing: str = "step"  # "step" (MoTE) | "gate" (Vanilla MoE / contrastive LoRA-MoE)
    n_gate_experts: int = 4  # gate mode: as many LoRAs as MoTE's 3 step experts + shared
    top_k: int = 2  # gate mode: as many active experts per token as MoTE (step + shared)
    contrastive_weight: float = 0.0
    contrastive_tau: float = 0.1
    contrastive_tokens: int = 64  # tokens sampled per layer and step for the contrastive loss
    query_expert_infer: str = "analysis"  # note §7.3
    seed: int = 0

    def __post_init__(self) -> None:
        self.target_modules = tuple(self.target_modules)
        self.experts = tuple(self.experts)
        if self.routing not in ("step", "gate"):
            raise ValueError(f"MoTEConfig.routing must be 'step' or 'gate', not {self.routing!r}")
        if self.routing == "step":
            unknown = set(self.experts) - (set(STEP_IDS) - {"query"})
            if unknown or not self.experts:
                raise ValueError(f"step experts must be among analysis/guidance/answer, got {self.experts}")
        if not 0.0 <= self.mix_alpha <= 1.0:
            raise ValueError("mix_alpha must lie in [0, 1]")

    @property
    def routed_names(self) -> tuple[str, ...]:
        return self.experts if self.routing == "step" else tuple(f"e{i}" for i in range(self.n_gate_experts))

    @property
    def expert_names(self) -> tuple[str, ...]:
        return self.routed_names + (("shared",) if self.shared_expert else ())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["target_modules"], d["experts"] = list(self.target_modules), list(self.experts)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MoTEConfig:
        return cls(**d)


@dataclass
class RoutingState:
    """Shared by all MoTELinear layers of one model: the current per-token expert indices, aux losses."""

    cfg: MoTEConfig
    route: torch.Tensor | None = None  # [B, T] index into cfg.routed_names
    present: list[int] = field(default_factory=list)
    onehot: torch.Tensor | None = None  # [B, T, len(present)] float; None when a single expert is present
    aux: list[torch.Tensor] = field(default_factory=list)
    generator: torch.Generator = field(default_factory=torch.Generator)


class MoTELinear(nn.Module):
    """A frozen nn.Linear plus LoRA experts (fp32 master weights, PEFT's init: A kaiming-uniform, B zero)."""

    def __init__(self, base: nn.Linear, cfg: MoTEConfig, state: RoutingState):
        super().__init__()
        self.base_layer = base
        self.cfg = cfg
        self._state = [state]  # a list keeps the state out of nn.Module's attribute magic
        self.scale = cfg.lora_alpha / cfg.r
        self.dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        dev = base.weight.device
        self.lora_A = nn.ParameterDict()
        self.lora_B = nn.ParameterDict()
        for name in cfg.expert_names:
            a = torch.empty(cfg.r, base.in_features, device=dev)
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
            self.lora_A[name] = nn.Parameter(a)
            self.lora_B[name] = nn.Parameter(torch.zeros(base.out_features, cfg.r, device=dev))
        self.gate = None
        if cfg.routing == "gate":
            self.gate = nn.Linear(base.in_features, cfg.n_gate_experts, bias=False, device=dev)

    @property
    def state(self) -> RoutingState:
        return self._state[0]

    def expert(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """One expert's LoRA output (scale included), e.g. for checks; forward fuses the active experts."""
        return (x @ self.lora_A[name].T) @ self.lora_B[name].T * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        cfg, state = self.cfg, self.state
        xd = self.dropout(x).to(self.lora_A[cfg.expert_names[0]].dtype)
        names = cfg.routed_names
        if self.gate is None:
            if state.route is None:
                raise RuntimeError("MoTE step routing needs step ids: wrap the call in `with routing(model, step_ids)`")
            if state.route.shape != x.shape[:-1]:
                raise RuntimeError(
                    f"routing step_ids {tuple(state.route.shape)} do not match the input {tuple(x.shape[:-1])}"
                )
            use = [names[e] for e in state.present]
            coef = state.onehot  # [B, T, n_present] or None when one expert takes every token
        else:
            logits = self.gate(x.to(self.gate.weight.dtype))
            top_v, top_i = logits.topk(cfg.top_k, dim=-1)
            coef = torch.zeros_like(logits).scatter(-1, top_i, top_v.softmax(-1))  # renormalised over top-k
            use = list(names)
            if self.training and cfg.contrastive_weight > 0:
                state.aux.append(self._contrastive(xd))
        if cfg.shared_expert:
            a = cfg.mix_alpha
            if coef is None:  # one routed expert for every token: a constant weight vector, broadcast
                coef = xd.new_tensor([a, 1 - a])
            else:
                coef = torch.cat([coef * a, xd.new_full((*x.shape[:-1], 1), 1 - a)], dim=-1)
            use.append("shared")
        # All active experts in two matmuls: codes h = x·[A_1; …; A_k]ᵀ, weighted per token in rank space (hard
        # routing = a one-hot weight), then h·[B_1 … B_k]ᵀ. Same result as summing masked expert outputs, but only
        # [B, T, k·r] activations are kept for backward instead of k outputs of the layer's full width.
        a_cat, b_cat = self._stacked(tuple(use))
        h = xd @ a_cat.T
        if coef is not None:
            h = (h.unflatten(-1, (len(use), cfg.r)) * coef.to(h.dtype).unsqueeze(-1)).flatten(-2)
        out = h @ b_cat.T * self.scale
        return result + out.to(result.dtype)

    def _stacked(self, use: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """[A_1; …; A_k] and [B_1 … B_k]; cached while no gradient is recorded (decoding) and the weights are
        unchanged (their version counters), rebuilt otherwise."""
        params = [self.lora_A[n] for n in use] + [self.lora_B[n] for n in use]
        if torch.is_grad_enabled():
            self._cache = None
            return torch.cat(params[: len(use)]), torch.cat(params[len(use) :], dim=1)
        key = (use, tuple(p._version for p in params), tuple(id(p) for p in params))
        cache = getattr(self, "_cache", None)
        if cache is None or cache[0] != key:
            cache = (key, torch.cat(params[: len(use)]), torch.cat(params[len(use) :], dim=1))
            self._cache = cache
        return cache[1], cache[2]

    def _contrastive(self, xd: torch.Tensor) -> torch.Tensor:
        """InfoNCE over experts: anchor = expert e's code of token t, positive = e's code of another token t',
        negatives = the other experts' codes of t'. Codes are A_e·x (B is zero at init, so outputs B·A·x would
        carry no signal and a normalised zero vector no gradient)."""
        flat = xd.reshape(-1, xd.shape[-1])
        n = min(self.cfg.contrastive_tokens, flat.shape[0])
        if n < 2:
            return flat.new_zeros(())
        idx = torch.randperm(flat.shape[0], generator=self.state.generator)[:n].to(flat.device)
        sub = flat[idx]
        codes = torch.stack([F.normalize(sub @ self.lora_A[name].T, dim=-1) for name in self.cfg.routed_names])
        other = codes.roll(1, dims=1)  # [E, n, r]: token t' = t-1
        logits = torch.einsum("etr,jtr->etj", codes, other) / self.cfg.contrastive_tau
        target = torch.arange(codes.shape[0], device=codes.device)[:, None].expand(-1, n)
        return F.cross_entropy(logits.reshape(-1, codes.shape[0]), target.reshape(-1))


# ---------------------------------------------------------------------------------------------------- apply
def mote_layers(model: nn.Module) -> Iterator[tuple[str, MoTELinear]]:
    for name, module in model.named_modules():
        if isinstance(module, MoTELinear):
            yield name, module


def get_state(model: nn.Module) -> RoutingState | None:
    state = getattr(model, "_mote_state", None)
    if state is not None:
        return state
    return next((m.state for _, m in mote_layers(model)), None)


def apply_mote(model: nn.Module, cfg: MoTEConfig) -> nn.Module:
    """Wrap every target linear layer in place; freeze everything except the experts (and gates) and parameters
    tagged `_mote_keep_trainable` (the step-token rows). Seeded: the same cfg gives the same initial experts."""
    if get_state(model) is not None:
        raise ValueError("apply_mote: the model already has MoTE layers")
    state = RoutingState(cfg)
    state.generator.manual_seed(cfg.seed)
    for p in model.parameters():
        p.requires_grad_(getattr(p, "_mote_keep_trainable", False))
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in cfg.target_modules
    ]
    if not targets:
        raise ValueError(f"apply_mote: no nn.Linear named any of {cfg.target_modules}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        for name, module in targets:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, MoTELinear(module, cfg, state))
    model._mote_state = state
    model._mote_config = cfg
    return model


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


# ---------------------------------------------------------------------------------------------------- routing
def _route(state: RoutingState, step_ids: torch.Tensor, query_expert: Any, training: bool) -> torch.Tensor:
    cfg = state.cfg
    names = cfg.routed_names
    n = len(names)
    lut = torch.full((len(STEP_IDS),), -1, dtype=torch.long)
    for step, sid in STEP_IDS.items():
        if step in names:
            lut[sid] = names.index(step)
        elif step != "query" and n == 1:
            lut[sid] = 0  # a single expert takes every step
    step_ids = step_ids.long()
    route = lut.to(step_ids.device)[step_ids]
    if bool(((route < 0) & (step_ids != STEP_IDS["query"])).any()):
        raise ValueError(f"step ids {sorted(set(step_ids.unique().tolist()))} include a step without expert {names}")
    b = step_ids.shape[0]
    if query_expert is None:
        query_expert = "random" if training else cfg.query_expert_infer
    if isinstance(query_expert, str):
        if query_expert == "random":
            qe = torch.randint(n, (b,), generator=state.generator)
        else:
            qe = torch.full((b,), names.index(query_expert) if query_expert in names else 0, dtype=torch.long)
    else:
        qe = torch.as_tensor(query_expert, dtype=torch.long).reshape(b)
    qe = qe.to(step_ids.device)
    return torch.where(step_ids == STEP_IDS["query"], qe[:, None], route)


def set_routing(model: nn.Module, step_ids: torch.Tensor | None, query_expert: Any = None) -> torch.Tensor | None:
    """Route the next forward (and its backward, e.g. under gradient checkpointing) by step ids [B, T].
    query_expert: None (random per sample in training, cfg.query_expert_infer in eval), an expert name, "random",
    or a LongTensor [B] of indices into the routed experts. No-op for models without step-routed MoTE layers.
    Returns the previous route."""
    state = get_state(model)
    if state is None or state.cfg.routing != "step":
        return None
    prev = state.route
    _set_route(state, None if step_ids is None else _route(state, step_ids, query_expert, model.training))
    return prev


def _set_route(state: RoutingState, route: torch.Tensor | None) -> None:
    state.route = route
    state.present = sorted(route.unique().tolist()) if route is not None else []
    state.onehot = None
    if len(state.present) > 1:
        state.onehot = (route.unsqueeze(-1) == torch.tensor(state.present, device=route.device)).float()


@contextlib.contextmanager
def routing(model: nn.Module, step_ids: torch.Tensor, query_expert: Any = None) -> Iterator[None]:
    """`with routing(model, step_ids): model(...)` — per-token step routing for the calls inside."""
    state = get_state(model)
    prev = set_routing(model, step_ids, query_expert)
    try:
        yield
    finally:
        if state is not None and state.cfg.routing == "step":
            _set_route(state, prev)


def pop_aux_loss(model: nn.Module) -> torch.Tensor | None:
    """Mean over layers of the auxiliary (contrastive) losses of the last forward, weighted; None if there are none."""
    state = get_state(model)
    if state is None or not state.aux:
        return None
    loss = torch.stack(state.aux).mean() * state.cfg.contrastive_weight
    state.aux.clear()
    return loss


# ---------------------------------------------------------------------------------------------------- save / load
def mote_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for path, layer in mote_layers(model):
        for name in layer.cfg.expert_names:
            out[f"{path}.lora_A.{name}.weight"] = layer.lora_A[name].detach().cpu().contiguous()
            out[f"{path}.lora_B.{name}.weight"] = layer.lora_B[name].detach().cpu().contiguous()
        if layer.gate is not None:
            out[f"{path}.gate.weight"] = layer.gate.weight.detach().cpu().contiguous()
    return out


def save_mote(model: nn.Module, out_dir: str | Path, extra: dict[str, Any] | None = None) -> None:
    """Experts (+ gates) and the step-token rows as safetensors, the config as json."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = get_state(model)
    if state is None:
        raise ValueError("save_mote: the model has no MoTE layers")
    tensors = {**mote_state_dict(model), **step_token_state(model)}
    save_file(tensors, str(out_dir / WEIGHTS_NAME), metadata={"format": "pt"})
    atomic_write_json(out_dir / CONFIG_NAME, {"mote": state.cfg.to_dict(), **(extra or {})})


def load_mote(model: nn.Module, adapter_dir: str | Path) -> nn.Module:
    """apply_mote with the saved config, then load experts, gates and step-token rows (strict)."""
    from safetensors.torch import load_file

    adapter_dir = Path(adapter_dir)
    cfg = MoTEConfig.from_dict(read_json(adapter_dir / CONFIG_NAME)["mote"])
    apply_mote(model, cfg)
    tensors = load_file(str(adapter_dir / WEIGHTS_NAME))
    tokens = {k: v for k, v in tensors.items() if k.startswith("step_tokens.")}
    experts = {k: v for k, v in tensors.items() if not k.startswith("step_tokens.")}
    expected = mote_state_dict(model)
    if set(expected) != set(experts):
        missing, unexpected = sorted(set(expected) - set(experts)), sorted(set(experts) - set(expected))
        raise ValueError(f"load_mote: missing {missing[:4]}…, unexpected {unexpected[:4]}…")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for key, value in experts.items():
            lora = ".lora_A." in key or ".lora_B." in key  # ParameterDict entries have no ".weight"
            params[key.removesuffix(".weight") if lora else key].copy_(value)
    if tokens:
        load_step_token_state(model, tokens)
    return model


# ---------------------------------------------------------------------------------------------------- PEFT / merge
def _step_combination(layer: MoTELinear, step: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(A [r', in], B [out, r']) with B·A·scale = the layer's LoRA delta when every token routes to `step`."""
    cfg = layer.cfg
    if cfg.routing != "step":
        raise ValueError("expert export / merge needs step routing (gate-mode mixtures are input-dependent)")
    name = step if step in cfg.experts else (cfg.experts[0] if len(cfg.experts) == 1 else None)
    if name is None:
        raise ValueError(f"no expert for step {step!r} (experts {cfg.experts})")
    a, b = layer.lora_A[name].detach(), layer.lora_B[name].detach()
    if not cfg.shared_expert:
        return a, b
    alpha = cfg.mix_alpha
    a_sh, b_sh = layer.lora_A["shared"].detach(), layer.lora_B["shared"].detach()
    return torch.cat([a, a_sh]), torch.cat([alpha * b, (1 - alpha) * b_sh], dim=1)


def expert_as_peft(model: nn.Module, step: str) -> tuple[Any, dict[str, torch.Tensor]]:
    """A plain PEFT LoRA adapter (LoraConfig, state dict in PEFT's saved-key format) equal to routing every token
    to `step`: with the shared expert it has rank 2r (step and shared experts stacked, α folded into B)."""
    from peft import LoraConfig

    state = get_state(model)
    if state is None:
        raise ValueError("expert_as_peft: the model has no MoTE layers")
    cfg = state.cfg
    rank = cfg.r * (2 if cfg.shared_expert else 1)
    sd: dict[str, torch.Tensor] = {}
    for path, layer in mote_layers(model):
        a, b = _step_combination(layer, step)
        sd[f"base_model.model.{path}.lora_A.weight"] = a.cpu().contiguous()
        sd[f"base_model.model.{path}.lora_B.weight"] = b.cpu().contiguous()
    # PEFT scales by lora_alpha / r: keep each expert's own scale cfg.lora_alpha / cfg.r at rank `rank`.
    config = LoraConfig(
        r=rank,
        lora_alpha=cfg.lora_alpha * rank / cfg.r,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return config, sd


def save_expert_as_peft(model: nn.Module, step: str, out_dir: str | Path) -> None:
    """Write `expert_as_peft` as a PEFT adapter folder (adapter_config.json + adapter_model.safetensors) and the
    step-token rows beside it (step_tokens.safetensors; PEFT does not know them)."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    config, sd = expert_as_peft(model, step)
    config.save_pretrained(str(out_dir))
    save_file(sd, str(out_dir / "adapter_model.safetensors"), metadata={"format": "pt"})
    tokens = step_token_state(model)
    if tokens:
        save_file(tokens, str(out_dir / "step_tokens.safetensors"), metadata={"format": "pt"})
    (out_dir / "mote_export.json").write_text(json.dumps({"step": step, "mote": get_state(model).cfg.to_dict()}))


def merge_expert(model: nn.Module, step: str, inplace: bool = False) -> nn.Module:
    """A plain model (nn.Linear layers, step-token rows written into the embeddings) equal to routing every token
    to `step`. Copies the model unless inplace=True."""
    if not inplace:
        model = copy.deepcopy(model)
    for path, layer in list(mote_layers(model)):
        a, b = _step_combination(layer, step)
        base = layer.base_layer
        with torch.no_grad():
            base.weight += ((b @ a) * layer.scale).to(base.weight.dtype)
        parent_name, _, child = path.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, base)
    for attr in ("_mote_state", "_mote_config"):
        if hasattr(model, attr):
            delattr(model, attr)
    return merge_step_tokens(model)
