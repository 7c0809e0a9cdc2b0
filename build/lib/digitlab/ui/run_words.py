"""What the training pages say about a run: its short name in an overlay, a stored run's caption, the warning for a
run that learned nothing, and the training step fit() will run for an MLP."""

from __future__ import annotations

import torch

from ..mlp_lessons import NORM_LABELS
from ..models import PRESETS, ModelInfo, TrainConfig
from ..train import ConfigError, compute_dtype, pick_device


def run_label(config: TrainConfig, epochs: bool = True) -> str:
    """A short name for a run in an overlay: what differs between runs a student compares."""
    hidden = "-".join(str(h) for h in config.hidden) if config.kind == "mlp" else ""
    parts = [config.preset, hidden, config.optimizer, f"lr {config.lr:g}", f"bs {config.batch_size}",
             f"{config.epochs} ep" if epochs else ""]
    if config.kind == "linear":
        parts.insert(1, f"init std {config.init_std:g}")
    if config.kind == "mlp" and config.norm != PRESETS.get(config.preset, config).norm:
        parts.append(f"inputs {NORM_LABELS.get(config.norm, config.norm).split(' (')[0]}")
    if config.train_limit:
        parts.append(f"{config.train_limit:,} imgs")
    return " · ".join(p for p in parts if p)


def trained_caption(info: ModelInfo) -> str:
    """What a stored run was, said once: its settings, then how many epochs it has had."""
    n = len(info.history) or info.config.epochs
    return f"{run_label(info.config, epochs=False)}; trained for {n} epoch{'s' if n != 1 else ''}"


def run_verdict(config: TrainConfig, history: list[dict] | tuple[dict, ...]) -> str:
    """A plain warning for a run that finished without learning (too high a rate often kills it quietly).

    A loss that turns into NaN already stops the run with the queue's message; this catches the quieter
    failure, where steps overshoot, ReLU units die and the model settles on guessing.
    """
    if not history:
        return ""
    chance = 0.5 if config.pair else 0.1
    acc = history[-1]["test_accuracy"]
    if acc < chance + 0.1:
        return (
            f"This run learned almost nothing: test accuracy {acc:.1%}, where guessing gets {chance:.0%}. "
            f"The learning rate {config.lr:g} is probably too high for {config.optimizer.upper()} here: the steps "
            "overshoot and the model gets stuck. Try one ten times smaller."
        )
    return ""


def how_fit_trains(config: TrainConfig) -> str:
    """What the MLP page says about the training step fit() will run for ``config`` on this machine."""
    if config.form == "scratch":
        return ("By hand, fit() runs the lesson's own step: the forward pass, `loss.backward()` for the gradients, "
                "then `p -= lr * p.grad` on w1, b1, w2 and b2.")
    text = ("fit() runs the tutorial's loop on every batch: the forward pass, the loss, `loss.backward()` (autograd "
            "applies the chain rule, as written out above), the optimizer's step and `zero_grad()`.")
    try:
        mixed = compute_dtype(config, pick_device()) == torch.bfloat16
    except ConfigError as e:  # a bad DIGITLAB_PRECISION: say so here; Train reports it too
        return f"{text} {e}"
    if mixed:
        text += " DIGITLAB_PRECISION=bf16: the forward pass runs under torch.autocast, multiplying in bfloat16."
    return text
