"""LoRA fine-tuning of the text encoder on interaction pairs: contrastive InfoNCE with in-batch negatives.

A pair is (query text, target text): the query is what a user engaged with before (one history item, or the
concatenated texts of recent ones), the target is the item they engaged with next. Within a batch every other
target is a negative (plus an optional hard negative per pair, e.g. an item the user rated low); pairs that share
the target item are masked, so a popular item is never its own negative. LoRA (or AdaLoRA) via peft adapts the
attention and feed-forward projections; the base weights stay frozen.

This module uses torch, transformers and peft only (pairs are built by `recsys.encoder.pairs`), so the same loop
runs on a GPU machine that has no data stack.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.encoder.adapter import ADAPTER_META, check_base, quiet_peft
from recsys.encoder.config import FineTuneConfig, LoRAConfig
from recsys.encoder.model import (
    EncoderConfig,
    default_model_path,
    load_base_model,
    mean_pool,
    model_digest,
    select_device,
)
from recsys.encoder.pairs import PairSet

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class FineTuneStatus:
    """What the progress callback sees after each step."""

    step: int
    total_steps: int
    loss: float
    pairs_per_second: float
    val_loss: float | None


@dataclass(frozen=True)
class FineTuneResult:
    adapter_path: Path
    steps: int
    pairs_seen: int
    wall_seconds: float
    train_seconds: float  # optimisation only (validation passes excluded)
    pairs_per_second: float
    best_step: int
    best_val_loss: float | None
    initial_val_loss: float | None
    stopped: str  # "completed" | "early_stopping" | "time_budget" | "max_steps"
    temperature: float
    history: list[dict[str, float]]
    device: str
    dtype: str

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["adapter_path"] = str(self.adapter_path)
        return d


def _peft_config(cfg: LoRAConfig, total_steps: int):  # returns a peft config
    from peft import AdaLoraConfig, LoraConfig

    common: dict[str, Any] = {
        "lora_alpha": cfg.alpha,
        "lora_dropout": cfg.dropout,
        "target_modules": list(cfg.target_modules),
        # Mean pooling reads the last hidden states; a pooler head gets no gradient (AdaLoRA fails on it).
        "exclude_modules": r".*pooler.*",
    }
    if cfg.method == "lora":
        return LoraConfig(r=cfg.r, **common)
    tinit = max(1, total_steps // 10)
    tfinal = max(1, total_steps // 5)
    if total_steps <= tinit + tfinal:
        raise ValueError(f"AdaLoRA needs more than {tinit + tfinal} steps to allocate its budget, got {total_steps}")
    return AdaLoraConfig(
        init_r=cfg.r,
        target_r=cfg.adalora_target_r,
        tinit=tinit,
        tfinal=tfinal,
        deltaT=max(1, total_steps // 20),
        total_step=total_steps,
        **common,
    )


class _Embedder:
    """Tokenise a batch with dynamic padding and embed it (mean pooling + L2), under bf16 autocast when asked."""

    def __init__(self, model, tokenizer, device: torch.device, dtype: torch.dtype, max_length: int) -> None:
        self.model, self.tokenizer, self.device, self.dtype, self.max_length = (
            model,
            tokenizer,
            device,
            dtype,
            max_length,
        )

    def __call__(self, texts: list[str]) -> torch.Tensor:
        import torch

        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            hidden = self.model(**batch).last_hidden_state
        return mean_pool(hidden, batch["attention_mask"])


class _LogQ:
    """log sampling frequency of each key among the training pairs' targets (or queries); unseen keys get the min."""

    def __init__(self, keys: Sequence[str], strength: float = 1.0) -> None:
        values, counts = np.unique(np.asarray(keys, dtype=object), return_counts=True)
        logq = strength * np.log(counts / counts.sum())
        self.table = dict(zip(values.tolist(), logq.tolist(), strict=True))
        self.floor = float(logq.min()) if len(logq) else 0.0

    def __call__(self, keys: Sequence[str], device: torch.device) -> torch.Tensor:
        import torch

        return torch.tensor([self.table.get(k, self.floor) for k in keys], dtype=torch.float32, device=device)


def _info_nce(
    q: torch.Tensor,
    t: torch.Tensor,
    hard: torch.Tensor | None,
    q_keys: Sequence[str],
    t_keys: Sequence[str],
    scale: torch.Tensor,
    symmetric: bool,
    logq: tuple[_LogQ, _LogQ] | None = None,
) -> torch.Tensor:
    """Cross-entropy of each query against all targets in the batch (+ hard negatives); duplicates masked.

    With `logq` (target and query frequency tables), in-batch logits are corrected by -log q (sampled softmax).
    """
    import torch
    import torch.nn.functional as F

    n = q.shape[0]
    same_t = torch.tensor(np.equal.outer(np.asarray(t_keys, dtype=object), np.asarray(t_keys, dtype=object)))
    off_diag = ~torch.eye(n, dtype=torch.bool)
    mask_t = (same_t & off_diag).to(q.device)
    candidates = t if hard is None else torch.cat([t, hard])
    logits = scale * q @ candidates.T
    if logq is not None:
        logits[:, :n] = logits[:, :n] - logq[0](t_keys, q.device)
    logits[:, :n] = logits[:, :n].masked_fill(mask_t, float("-inf"))
    labels = torch.arange(n, device=q.device)
    loss = F.cross_entropy(logits, labels)
    if symmetric:
        same_q = torch.tensor(np.equal.outer(np.asarray(q_keys, dtype=object), np.asarray(q_keys, dtype=object)))
        back = scale * t @ q.T
        if logq is not None:
            back = back - logq[1](q_keys, q.device)
        back = back.masked_fill((same_q & off_diag).to(q.device), float("-inf"))
        loss = (loss + F.cross_entropy(back, labels)) / 2
    return loss


def _batches(n: int, batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    order = rng.permutation(n) if rng is not None else np.arange(n)
    return [order[s : s + batch_size] for s in range(0, n - 1, batch_size) if len(order[s : s + batch_size]) >= 2]


def fine_tune(
    train: PairSet,
    valid: PairSet | None,
    *,
    out: Path,
    encoder: EncoderConfig | None = None,
    cfg: FineTuneConfig | None = None,
    seed: int = 42,
    time_budget_s: float | None = None,
    init_adapter: Path | None = None,
    progress: Callable[[FineTuneStatus], None] | None = None,
) -> FineTuneResult:
    """Fine-tune LoRA adapters on `train` pairs, early-stopping on `valid`; save the best adapter to `out`.

    Args:
        train, valid: pairs (valid from a later time slice than train; None disables early stopping).
        out: adapter folder to write (replaced atomically).
        encoder: base model, device and precision (its `adapter_path` is ignored; use `init_adapter`).
        cfg: hyper-parameters.
        seed: seeds shuffling, LoRA initialisation and dropout (global RNG state is restored afterwards).
        time_budget_s: stop after this much wall time (the best adapter so far is kept).
        init_adapter: warm start from a previous adapter (e.g. the champion's) trained on the same base model.
    """
    import torch
    from peft import PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
    from transformers import AutoTokenizer

    encoder = encoder or EncoderConfig()
    cfg = cfg or FineTuneConfig()
    if len(train) < 2:
        raise ValueError(f"fine-tuning needs at least 2 training pairs, got {len(train)}")
    started = time.perf_counter()
    base_path = Path(encoder.model_path or default_model_path())
    if init_adapter is not None:
        check_base(init_adapter, base_path)  # fail before any model is loaded
    device, dtype = select_device(encoder.device, encoder.precision)
    rng = np.random.default_rng(seed)
    steps_per_epoch = len(_batches(len(train), cfg.batch_size, None))
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)

    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        # Frozen base weights in the compute dtype (bf16 where fast); LoRA weights stay fp32 (peft's default) and the
        # optimiser updates only those. On CPUs, eager attention: the fused CPU attention kernel's backward pass was
        # ~50% of a training step, and dropout-mask sampling another ~45% (hence dropout off by default).
        attn = "eager" if device.type == "cpu" else None
        base = load_base_model(base_path, dtype, attn_implementation=attn)
        if not cfg.model_dropout:
            for module in base.modules():
                if isinstance(module, torch.nn.Dropout):
                    module.p = 0.0
        with quiet_peft():
            if init_adapter is not None:
                model = PeftModel.from_pretrained(base, str(init_adapter), is_trainable=True)
            else:
                model = get_peft_model(base, _peft_config(cfg.lora, total_steps))
        model.to(device)
        tokenizer = AutoTokenizer.from_pretrained(base_path)
        embed = _Embedder(model, tokenizer, device, dtype, cfg.max_length)
        log_scale = torch.nn.Parameter(
            torch.tensor(math.log(1.0 / cfg.temperature), device=device), requires_grad=cfg.learn_temperature
        )
        params = [p for p in model.parameters() if p.requires_grad]
        if cfg.learn_temperature:
            params.append(log_scale)
        optim = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        warmup = int(cfg.warmup_fraction * total_steps)

        def lr_lambda(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

        sched = torch.optim.lr_scheduler.LambdaLR(optim, lr_lambda)
        is_adalora = cfg.lora.method == "adalora" and init_adapter is None
        use_logq = cfg.logq_correction and cfg.logq_strength > 0
        logq = (
            (_LogQ(train.target_keys, cfg.logq_strength), _LogQ(train.query_keys, cfg.logq_strength))
            if use_logq
            else None
        )

        def batch_loss(pairs: PairSet, idx: np.ndarray, *, use_hard: bool = True) -> torch.Tensor:
            part = pairs.take(idx.tolist())
            hard_texts = [t for t in part.negatives if t] if part.negatives and use_hard else []
            texts = part.queries + part.targets + hard_texts
            vecs = embed(texts)
            n = len(idx)
            hard = vecs[2 * n :] if hard_texts else None
            scale = log_scale.exp().clamp(max=100.0)
            return _info_nce(
                vecs[:n], vecs[n : 2 * n], hard, part.query_keys, part.target_keys, scale, cfg.symmetric, logq
            )

        val_batches = _batches(len(valid), cfg.batch_size, None) if valid is not None and len(valid) >= 2 else []

        def train_mode() -> None:
            model.train()
            if not cfg.model_dropout:  # p=0 alone still samples masks on the CPU
                for module in model.modules():
                    if isinstance(module, torch.nn.Dropout):
                        module.eval()

        def validate() -> float | None:
            if not val_batches:
                return None
            model.eval()
            with torch.inference_mode():
                # In-batch negatives only: hard negatives would make every validation pass 1.5x dearer.
                losses = [float(batch_loss(valid, idx, use_hard=False)) * len(idx) for idx in val_batches]  # type: ignore[arg-type]
            train_mode()
            return sum(losses) / sum(len(b) for b in val_batches)

        def snapshot() -> dict[str, torch.Tensor]:
            return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}

        initial_val = validate()
        best_val, best_step, best_state, best_scale = initial_val, 0, snapshot(), float(log_scale.exp())
        bad_evals, step, seen, train_seconds = 0, 0, 0, 0.0
        history: list[dict[str, float]] = []
        stopped = "completed"
        loss_ema: float | None = None
        train_mode()
        for _epoch in range(cfg.epochs):
            for idx in _batches(len(train), cfg.batch_size, rng):
                if step >= total_steps:
                    stopped = "max_steps" if cfg.max_steps is not None else "completed"
                    break
                t0 = time.perf_counter()
                loss = batch_loss(train, idx)
                loss.backward()
                optim.step()
                if is_adalora:
                    model.base_model.update_and_allocate(step)  # type: ignore[operator]  # peft AdaLoRA
                optim.zero_grad(set_to_none=True)
                sched.step()
                train_seconds += time.perf_counter() - t0
                step += 1
                seen += len(idx)
                value = float(loss.detach())
                loss_ema = value if loss_ema is None else 0.9 * loss_ema + 0.1 * value
                out_of_time = time_budget_s is not None and time.perf_counter() - started >= time_budget_s
                val = None
                if step % cfg.eval_every == 0 or step == total_steps or out_of_time:
                    # (also when the budget ends the run: the steps since the last pass must not be lost unseen)
                    val = validate()
                    history.append({"step": step, "train_loss": round(loss_ema, 5), "val_loss": val or float("nan")})
                    if val is not None:
                        if best_val is None or val < best_val - cfg.min_delta:
                            best_val, best_step, best_state, best_scale = val, step, snapshot(), float(log_scale.exp())
                            bad_evals = 0
                        else:
                            bad_evals += 1
                if progress:
                    progress(FineTuneStatus(step, total_steps, loss_ema, seen / max(train_seconds, 1e-9), val))
                if val_batches and bad_evals >= cfg.patience:
                    stopped = "early_stopping"
                    break
                if out_of_time:
                    stopped = "time_budget"
                    break
            if stopped != "completed":
                break
        if not val_batches:  # nothing to select on: keep the last weights
            best_step, best_state, best_scale = step, snapshot(), float(log_scale.exp())
        set_peft_model_state_dict(model, best_state)
        result = FineTuneResult(
            adapter_path=Path(out),
            steps=step,
            pairs_seen=seen,
            wall_seconds=0.0,
            train_seconds=round(train_seconds, 3),
            pairs_per_second=round(seen / max(train_seconds, 1e-9), 3),
            best_step=best_step,
            best_val_loss=best_val,
            initial_val_loss=initial_val,
            stopped=stopped,
            temperature=round(1.0 / best_scale, 6),
            history=history,
            device=str(device),
            dtype=str(dtype).removeprefix("torch."),
        )
        _save(model, Path(out), base_path, encoder, cfg, seed, init_adapter, len(train), len(valid or []), result)
    wall = time.perf_counter() - started
    return FineTuneResult(**{**asdict(result), "adapter_path": Path(out), "wall_seconds": round(wall, 3)})


def _save(
    model,  # a PeftModel
    out: Path,
    base_path: Path,
    encoder: EncoderConfig,
    cfg: FineTuneConfig,
    seed: int,
    init_adapter: Path | None,
    n_train: int,
    n_valid: int,
    result: FineTuneResult,
) -> None:
    """Write the adapter (safetensors) and recsys.json into a temporary folder, then swap it into place."""
    import peft
    import torch
    import transformers

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    meta = {
        "base_model_path": str(base_path),
        "base_model_digest": model_digest(base_path),
        "encoder": encoder.model_dump(exclude={"adapter_path"}),
        "fine_tune": cfg.model_dump(),
        "seed": seed,
        "warm_start_from": str(init_adapter) if init_adapter else None,
        "n_train_pairs": n_train,
        "n_valid_pairs": n_valid,
        "result": {k: v for k, v in result.to_dict().items() if k != "adapter_path"},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
    }
    (tmp / ADAPTER_META).write_text(json.dumps(meta, indent=2, default=str))
    if out.exists():
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        out.replace(old)
        tmp.replace(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.replace(out)
