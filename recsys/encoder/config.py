"""The encoder stage's settings (pydantic only): what the CLI, the flows and `recsys.config` read without importing
the code that trains (LoRA fine-tuning, the collaborative head)."""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, Field, model_validator

from recsys.encoder.interest import InterestConfig
from recsys.encoder.model import EncoderConfig
from recsys.encoder.pairs import PairConfig
from recsys.encoder.text import ItemTextConfig


class LoRAConfig(BaseModel, frozen=True, extra="forbid"):
    """Which projections get low-rank adapters, and how big."""

    method: Literal["lora", "adalora"] = "lora"
    r: int = Field(16, ge=1, le=512, description="rank (AdaLoRA: initial rank)")
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout (costly on CPUs: 0 by default)")
    target_modules: tuple[str, ...] = ("query", "key", "value", "dense")
    adalora_target_r: int = Field(8, ge=1, description="AdaLoRA: average rank after budget allocation")


class FineTuneConfig(BaseModel, frozen=True, extra="forbid"):
    """Hyper-parameters of the contrastive fine-tuning (run context such as seed and time budget stays apart)."""

    lora: LoRAConfig = LoRAConfig()
    learning_rate: float = Field(5e-4, gt=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(64, ge=2, description="pairs per step; the other targets are the negatives")
    epochs: int = Field(1, ge=1)
    max_steps: int | None = Field(200, ge=1, description="step budget (runs repeat); None: `epochs` full passes")
    warmup_fraction: float = Field(0.1, ge=0, lt=1)
    temperature: float = Field(0.05, gt=0, le=1)
    learn_temperature: bool = False
    symmetric: bool = Field(True, description="also score queries given targets (both directions of InfoNCE)")
    logq_correction: bool = Field(
        True,
        description="subtract log(sampling frequency) from in-batch logits (Yi et al. 2019): without it, popular "
        "items are over-used as negatives and the encoder learns to rank them down",
    )
    logq_strength: float = Field(
        1.0,
        ge=0,
        le=1,
        description="share of the correction applied: 1 = full sampled-softmax correction (scores learn item "
        "popularity), 0 = none (scores learn popularity-discounted affinity, which favours rare and new items)",
    )
    max_length: int = Field(128, ge=8, le=8192, description="tokens per query and per target text")
    eval_every: int = Field(50, ge=1, description="steps between validation passes")
    patience: int = Field(3, ge=1, description="validation passes without improvement before stopping")
    min_delta: float = Field(1e-4, ge=0)
    model_dropout: bool = Field(
        False, description="keep the base model's own dropout on while training (off: ~2x faster on CPUs)"
    )


Objective: TypeAlias = Literal["elsa", "cf-distill", "next-item"]
OBJECTIVES: tuple[Objective, ...] = ("elsa", "cf-distill", "next-item")


class HeadConfig(BaseModel, frozen=True, extra="forbid"):
    """The collaborative head's objective and training budget (in steps, so runs repeat)."""

    enabled: bool = Field(True, description="train a head on top of the encoder's item embeddings")
    objective: Objective = Field(
        "cf-distill",
        description="chosen on amazon-scientific's validation data (bench/objectives.py): best warm and cold",
    )
    steps: int = Field(150, ge=1, description="optimiser steps (a fixed budget: results do not depend on load)")
    batch_users: int = Field(1024, ge=1, description="elsa: users per step; others: query items per step")
    learning_rate: float = Field(0.01, gt=0, le=1)
    identity_weight: float = Field(0.001, ge=0, description="penalty on ||W - I||^2: stays near the pretrained space")
    temperature: float = Field(0.05, gt=0, le=1, description="cf-distill and next-item softmax temperature")
    neighbours: int = Field(20, ge=1, description="cf-distill: EASE neighbours per item in the target")
    ease_l2: float = Field(100.0, gt=0, description="cf-distill: EASE's l2 for the teacher")


class EncoderStageConfig(BaseModel, frozen=True, extra="forbid"):
    """The text encoder stage: model, item text, training pairs, fine-tuning, interest scores, and its run budget."""

    model: EncoderConfig = Field(default_factory=EncoderConfig)
    text: ItemTextConfig = Field(default_factory=ItemTextConfig)
    pairs: PairConfig = Field(default_factory=PairConfig)
    fine_tune: FineTuneConfig = Field(default_factory=FineTuneConfig)
    interest: InterestConfig = Field(default_factory=InterestConfig)
    head: HeadConfig = Field(default_factory=HeadConfig)
    enabled_fine_tune: bool | Literal["auto"] = Field(
        "auto",
        description="LoRA fine-tuning of the encoder on next-item pairs (budget: [encoder.fine_tune] max_steps). auto: "
        "on when a CUDA device is present, off on CPUs, where it costs minutes per night and, measured, lifted no "
        "ranking; the collaborative head ([encoder.head]) carries the interaction signal there "
        "(docs/decisions/collaborative-head.md)",
    )

    @model_validator(mode="before")
    @classmethod
    def _run_context_moved(cls, data: Any) -> Any:
        moved = [k for k in ("cache_dir", "time_budget_s") if isinstance(data, dict) and k in data]
        if moved:
            raise ValueError(
                f"[encoder] {', '.join(moved)} moved to [run] (cache_dir; fine_tune_time_budget_s): run context, "
                "not the encoder's settings"
            )
        return data


def fine_tune_enabled(cfg: EncoderStageConfig) -> bool:
    """`enabled_fine_tune` resolved: "auto" is on where a CUDA device is present."""
    if cfg.enabled_fine_tune == "auto":
        import torch

        return bool(torch.cuda.is_available())
    return cfg.enabled_fine_tune
