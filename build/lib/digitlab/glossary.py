"""The words a page uses before it explains them, each in two or three plain sentences.

Pages show the terms they use where the words first appear (``ui.glossary("softmax", "logit")``), and the
Home page lists them all.
"""

from __future__ import annotations

TERMS: dict[str, str] = {
    "logit": "The raw score a network gives each class before anything turns it into a probability. Any real "
             "number; only the differences between the scores matter.",
    "softmax": "Turns the logits into probabilities that add up to 1: exp(score) of each class divided by the sum "
               "of them all. A class whose score is a few units above the rest gets almost all of the probability, "
               "so plain softmax readily says 100%.",
    "sigmoid": "1 / (1 + exp(-x)): squeezes any number into 0..1. The 3-vs-7 model's one output goes through it: "
               "above 0.5 it answers 3.",
    "cross-entropy": "The loss for classes: minus the log of the probability the model gave the right class. 0 when "
                     "it was sure and right, large when it was sure and wrong.",
    "label smoothing": "Training aims at 90% (or 95%) for the right class and spreads the rest over the others, "
                       "instead of aiming at 100%. The model generalises a little better, and its probabilities "
                       "stay below 100% even for clear digits: it looks less sure than it is.",
    "calibration": "A model is calibrated when its confidence matches how often it is right: of the answers given "
                   "with 80% confidence, 80% are correct. The reliability diagram shows it; the expected calibration "
                   "error (ECE) is the average gap, weighted by how many answers fall in each bin.",
    "temperature scaling": "Divides every logit by one number T before softmax: T > 1 makes the model less sure, "
                           "T < 1 surer; the answer itself never changes. T is fitted on images the figures are not "
                           "scored on, so that confidence means the same for every model.",
    "one-cycle": "A learning-rate schedule: the rate climbs from small to its peak over the first part of training, "
                 "then glides down to almost zero. Big steps explore, small steps settle; one epoch can reach 99%.",
    "batch norm": "BatchNorm rescales each channel of a layer's output to mean 0 and spread 1 over the batch, then "
                  "lets training pick the best scale. Deeper networks train faster and at higher learning rates.",
    "bfloat16": "A 16-bit number format with float32's range but fewer digits. Recent CPUs multiply it much faster; "
                "DigitLab's CNNs compute in it where the hardware has it, and keep the weights in float32.",
    "autograd": "PyTorch's automatic differentiation: it records every operation on tensors that need gradients, "
                "and loss.backward() walks the record backwards with the chain rule, filling each weight's .grad.",
    "epoch": "One pass over all the training images. A run of 5 epochs sees every image 5 times.",
    "batch size": "How many images each gradient step averages over. Small batches step more often but noisier.",
    "learning rate": "How far each step moves the weights against the gradient. Too small crawls, too big blows up.",
    "augmentation": "Small random changes to each training image (shifts, rotations), so the model learns the digit "
                    "and not its exact position.",
}


def entries(*terms: str) -> list[tuple[str, str]]:
    """(term, explanation) for each known term, in the order asked; every term when none is named."""
    names = terms or tuple(TERMS)
    return [(t, TERMS[t]) for t in names if t in TERMS]


def markdown(*terms: str) -> str:
    """The terms as a short markdown list."""
    return "\n".join(f"- **{t}**: {text}" for t, text in entries(*terms))
