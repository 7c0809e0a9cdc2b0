"""What the CNN, Features and Linear pages say beside their figures of a model's insides: a two-class model in a
sentence, how its weights read, the output chart, the units that fire, saliency, before and after training."""

from __future__ import annotations

import torch

from ..data import plural
from ..features import Firing, class_names, paper_value
from ..models import TrainConfig
from ..saliency import Explanation


def pair_note(config: TrainConfig) -> str:
    """What a two-class model is, in a sentence (3 vs 7: how much the image looks like a 3 rather than a 7)."""
    no, yes = config.classes
    return f"A two-class model: one output that says how much the image looks like a {yes} rather than a {no}."


def pair_weights_note(config: TrainConfig) -> str:
    """How a two-class linear model's 784 weights read, with its two classes' names."""
    no, yes = config.classes
    return (f"The sum of weight × pixel plus the bias is the model's one output: above 0 it answers **{yes}**, below "
            f"0 **{no}**. So red pixels are where {plural(yes)} have ink and {plural(no)} do not, blue the reverse.")


def output_note(config: TrainConfig) -> str:
    """What the last activation chart is, and what turns it into the answer's probabilities."""
    if config.pair:
        return ("Hidden activations are what the next layer reads. The last chart is the one output: the sigmoid "
                f"of it is the probability of {config.classes[1]}.")
    out = ("log-probabilities, as the model ends in LogSoftmax; exp() of them is the answer above."
           if config.loss == "nll" else "raw scores (logits), before softmax turns them into the probabilities above.")
    if config.label_smoothing:
        out += (f" Trained with label smoothing {config.label_smoothing:g}, it keeps its logits close together, so "
                "even a clear digit rarely gets more than about 90%.")
    return "Hidden activations are what the next layer reads. The last chart is the output: " + out


def firing_note(fire: Firing, config: TrainConfig) -> str:
    """What the units-that-fire pictures show, in words."""
    if config.pair:
        no, yes = config.classes
        text = ("The linear model has no hidden layer: its one output unit is all there is. It multiplies every "
                "pixel by its weight and adds them up, plus its bias: the second image is that product, pixel by "
                f"pixel, so its red parts pushed the answer towards {yes} and its blue parts towards {no}.")
    else:
        text = (f"The {len(fire.units)} strongest units of **{fire.layer}** for this image (in red above). Each unit "
                "multiplies every pixel by its weight and adds them up, plus its bias: the second grid is that "
                "product, pixel by pixel, so its red parts are the ink that made the unit fire.")
    if paper_value(config) != 0:
        text += (f" This model reads paper as {paper_value(config):g}, not 0 (its inputs are normalised), so paper "
                 "pixels count in the sum too.")
    return text


def saliency_note(ex: Explanation, config: TrainConfig) -> str:
    """What the saliency, gradient × input and Grad-CAM pictures show, in words."""
    what = class_names(config)[ex.target]
    text = ("**Saliency**: how much the score would change if one pixel changed a little (the size of its gradient). "
            "**Gradient × input**: the gradient times the pixel, so it lights up the ink that is there: red pushed "
            f"the score for '{what}' up, blue pushed it down.")
    if ex.grad_cam is not None:
        text += (" **Grad-CAM**: the last convolution block's maps, each weighted by how much the score rises with "
                 "it, added up and stretched back to 28x28: the regions the CNN used, coarser but steadier than "
                 "saliency.")
    if paper_value(config) != 0:
        text += (f" This model reads paper as {paper_value(config):g}, not 0 (its inputs are normalised), so "
                 "gradient × input can light up paper too.")
    return text


def share_of_start(moved: float) -> str:
    """``weight_change``'s "moved ÷ norm before" as a percentage; a tensor that started at zero (BatchNorm's
    shifts, zeroed biases) has no "before" to divide by."""
    return f"{moved:.1%}" if moved == moved else "— (started at 0)"


def before_after_note(config: TrainConfig, pairs: list[tuple[str, torch.Tensor, list[str]]], change: list[dict]) -> str:
    """What the before-and-after pictures show (``before_after``) and how far training moved the first weights
    (``weight_change``'s first row), in words."""
    text = ""
    if pairs and pairs[0][1].shape[-1] == 28:
        n = len(pairs[0][2])
        text = ("The same unit before and after, on its own colour scale. " if n == 1 else
                f"The same {n} units before and after (largest trained norm first), each on its own colour scale. ")
        text += ("With the seed's std-1 start the weights stay mostly noise; the change is small beside them. "
                 if config.kind == "linear" and config.init_std >= 1 else "Random noise before; strokes and blobs after. ")
    if change:
        moved = change[0]["moved ÷ norm before"]
        text += (f"Training moved the first layer's weights by {moved:.0%} of their starting size"
                 + (": they still carry much of their random start, as the pictures show." if moved < 0.5 else ".")
                 + " The table: how far training moved each weight tensor (L2 norms).")
    return text
