"""A training run's config and the one schema of its fields: kind, bounds, choices, meaning.

``TrainConfig`` is everything that decides a run. ``FIELDS`` says, once, what each of its fields may hold; every
reader asks it: ``check_config`` (before any run), the store's record check (``records``), a shared link
(``links.from_params``), the stage pages' widgets (their min, max and options) and the command line (argparse's
choices, types and help). A bound changes in one line here, and a value just outside it is refused with the same
message everywhere (``Field.problem``).

Each field has the range a new run may ask for, and where records written before were allowed more (``stored``),
that wider range, so the store still reads every model it ever wrote.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, replace

from . import checks
from .data import DATASETS, NORMALISATIONS


class TrainingError(Exception):
    """A run that cannot go on, with a message fit for a page."""


class ConfigError(TrainingError):
    """Settings that cannot train, with a message a student can act on."""


ACTIVATION_NAMES = {"relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid"}  # models.ACTIVATIONS builds them
AUGMENTATIONS = ("affine", "mirror")  # train.augment (turn, scale, shift for digits), train.mirror_shift (clothes only)
MAX_HIDDEN_LAYERS, MAX_LAYER_UNITS = 6, 4096  # the largest MLP the stage lets a student build

# The CNNs a config may name: (title, DigitCNN's arguments). All keep the seed's two blocks of unpadded 3x3
# convolutions and 2x2 pooling (28 -> 26 -> 13 -> 11 -> 5 for one convolution a block), so every CNN view and the
# conv arithmetic apply.
CNN_ARCHS: dict[str, tuple[str, dict]] = {
    "digitcnn": ("DigitCNN", {}),
    "digitcnn_bn": ("DigitCNN + BatchNorm", {"batch_norm": True, "dropout": 0.1}),
    "digitcnn_fast": ("DigitCNN + BatchNorm, pool first", {"batch_norm": True, "pool_first": True}),
    # Fashion-MNIST's: two convolutions in each block before it pools, then a 256-unit layer with dropout. (Twice the
    # maps in one-convolution blocks instead, 64 then 128, cost more per epoch and reached 92.1% in cnn-best's 12.)
    "digitcnn_deep": ("DigitCNN + BatchNorm, two convolutions per block",
                      {"batch_norm": True, "dropout": 0.3, "hidden": 256, "convs_per_block": 2}),
}


# ---------------------------------------------------------------- the schema


@dataclass(frozen=True, eq=False)
class Field:
    """What one config field may hold. ``kind``: int, float, bool, choice, text, task (all ten classes or a pair),
    sizes (a list of whole numbers) or names (a list of choices). ``lo``..``hi`` bound a number (a list's items);
    ``stored``: the wider (lo, hi) that records written before may hold."""

    kind: str
    label: str  # what a message calls it: "the learning rate is 100.0, outside 1e-07..10"
    meaning: str  # one line: a widget's or an option's help
    lo: float = 0
    hi: float = 0
    choices: tuple = ()
    labels: dict = field(default_factory=dict)  # a choice's words on a page, where they differ from its name
    stored: tuple | None = None

    def check(self, stored: bool = False) -> checks.Check:
        """The field's check (checks' language): a new run's range, or with ``stored`` a record's."""
        lo, hi = self.stored if stored and self.stored else (self.lo, self.hi)
        if self.kind == "int":
            return checks.whole(int(lo), int(hi))
        if self.kind == "float":
            return checks.number(lo, hi)
        if self.kind == "bool":
            return checks.choice(False, True)
        if self.kind == "choice":
            return checks.choice(*self.choices, label=self.label)
        if self.kind == "text":
            return checks.text(int(hi))
        if self.kind == "task":
            return _task
        if self.kind == "sizes":
            return checks.list_of(checks.whole(int(lo), int(hi)), 0, MAX_HIDDEN_LAYERS)
        if self.kind == "names":
            return checks.list_of(checks.choice(*self.choices), 0, MAX_HIDDEN_LAYERS)
        raise ValueError(f"no check for a field of kind {self.kind!r}")

    def problem(self, value, stored: bool = False) -> str | None:
        """What is wrong with ``value`` for this field, as every reader says it, or None when it is fine."""
        try:
            self.check(stored)(value)
        except ValueError as e:
            said = str(e)
            return said if said.startswith("unknown ") else str(checks.inside(self.label, e))
        return None

    def parse(self, text: str):
        """A value from text (a link's parameter, a command-line option), or ValueError saying what is wrong."""
        try:
            value = int(text) if self.kind == "int" else float(text) if self.kind == "float" else text
        except ValueError:
            raise ValueError("not a whole number" if self.kind == "int" else "not a number") from None
        if (said := self.problem(value)) is not None:
            raise ValueError(said)
        return value

    @property
    def bounds(self) -> str:
        """The range in words for a help text: "1 to 100"."""
        return f"{self.lo:,} to {self.hi:,}" if self.kind == "int" else f"{self.lo:g} to {self.hi:g}"


def _task(v):
    """All ten classes ("digits"), or two different classes as "AvB" (e.g. "3v7", "6v0")."""
    m = re.match(r"^([0-9])v([0-9])$", v) if isinstance(v, str) else None
    if v != "digits" and (m is None or m[1] == m[2]):
        raise ValueError(f"is {v!r}, neither 'digits' nor two different classes such as '3v7'")
    return v


def _choice(label: str, meaning: str, choices, labels: dict | None = None) -> Field:
    return Field("choice", label, meaning, choices=tuple(choices), labels=labels or {})


# One line a field. The ranges are what a class needs; ``stored`` keeps every record the store accepted before.
FIELDS: dict[str, Field] = {
    "kind": _choice("model kind", "linear1, an MLP or a CNN", ("linear", "mlp", "cnn")),
    "preset": Field("text", "the preset", "the recipe the run started from", hi=64),
    "task": Field("task", "the task", "'digits' (all ten classes) or two classes such as '3v7'"),
    "dataset": _choice("dataset", "mnist (digits) or fashion (Fashion-MNIST)", DATASETS),
    "form": _choice("form", "nn (torch.nn, torch.optim) or scratch (plain tensors, SGD by hand)", ("nn", "scratch")),
    "hidden": Field("sizes", "hidden", "an MLP's hidden layer sizes", 1, MAX_LAYER_UNITS),
    "activations": Field("names", "activations", "one per hidden layer", choices=tuple(ACTIVATION_NAMES),
                         labels=ACTIVATION_NAMES),
    "arch": _choice("CNN architecture", "which DigitCNN", CNN_ARCHS, {k: t for k, (t, _) in CNN_ARCHS.items()}),
    "optimizer": _choice("optimizer", "plain SGD, SGD with momentum, or Adam", ("sgd", "momentum", "adam"),
                         {"sgd": "SGD", "momentum": "SGD + momentum 0.9", "adam": "Adam"}),
    # the learning-rate finder sweeps 1e-7..10, and the slider's notches end at 10
    "lr": Field("float", "the learning rate", "how far each step moves the weights", 1e-7, 10.0, stored=(1e-12, 1000.0)),
    "momentum": Field("float", "the momentum", "the share of the last step kept (optimizer momentum)", 0.0, 0.999,
                      stored=(0.0, 1.0)),  # 1 keeps every step for ever
    "weight_decay": Field("float", "the weight decay", "how much each step shrinks the weights", 0.0, 1.0,
                          stored=(0.0, 10.0)),
    "schedule": _choice("schedule", "a constant learning rate or one-cycle", ("constant", "onecycle")),
    # a batch is at most the training set (60,000 images); a larger one is refused against the task's images anyway
    "batch_size": Field("int", "the batch size", "images per gradient step", 1, 60_000, stored=(1, 100_000)),
    # a class trains minutes, not hours; "one more epoch" grows a stored run past 100, up to the store's 1,000
    "epochs": Field("int", "epochs", "passes over the training images", 1, 100, stored=(1, 1000)),
    "loss": _choice("loss", "cross_entropy, nll (after LogSoftmax) or mnist_loss (two classes)",
                    ("cross_entropy", "nll", "mnist_loss")),
    "norm": _choice("input scaling", "how pixels are scaled before the first layer", NORMALISATIONS),
    "init_std": Field("float", "the initial weights' std", "the spread of a by-hand model's first weights", 0.0, 10.0,
                      stored=(0.0, 100.0)),
    "augment": Field("bool", "augment", "train on turned, scaled and shifted (or mirrored) images"),
    "augment_kind": _choice("augmentation", "affine (digits) or mirror (clothes)", AUGMENTATIONS),
    "label_smoothing": Field("float", "the label smoothing", "the share of each target spread over the other classes",
                             0.0, 0.5, stored=(0.0, 1.0)),  # above 0.5 the wrong classes outweigh the right one
    "train_limit": Field("int", "the training images", "train on a random subset of this many (0: all)", 0, 60_000,
                         stored=(0, 10_000_000)),
    "seed": Field("int", "the seed", "the run's random numbers (the same seed, the same model)", 0, 2**32 - 1,
                  stored=(-(2**63), 2**64 - 1)),  # fit adds the epoch to it: room left below torch's 2**64
    "hold_out_every": Field("int", "hold_out_every", "every n-th training image is never trained on (0: none)",
                            0, 10_000),
}


# ---------------------------------------------------------------- the config


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; two equal configs train the same model."""

    kind: str = "mlp"  # "linear" | "mlp" | "cnn"
    preset: str = "custom"
    task: str = "digits"  # "digits" (all 10 classes) or "AvB", e.g. "3v7": the linear model's yes/no question
    dataset: str = "mnist"  # "mnist" | "fashion" (see data.DATASETS)
    form: str = "nn"  # "scratch": plain tensors and a hand-written SGD step; "nn": torch.nn and torch.optim
    hidden: tuple[int, ...] = (50,)
    activations: tuple[str, ...] = ("relu",)  # one per hidden layer
    arch: str = "digitcnn"  # for kind="cnn": one of CNN_ARCHS, "digitcnn" (the seed's) by default
    optimizer: str = "sgd"  # "sgd" | "momentum" | "adam"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"  # "constant" | "onecycle"
    batch_size: int = 256
    epochs: int = 5
    loss: str = "cross_entropy"  # "mnist_loss" (3v7) | "nll" | "cross_entropy"
    norm: str = "none"  # see data.NORMALISATIONS
    init_std: float = 1.0  # linear from scratch: the seed draws weights with std 1
    augment: bool = False
    augment_kind: str = "affine"  # one of AUGMENTATIONS: "affine" (turn, scale, shift: digits) or "mirror" (clothes)
    label_smoothing: float = 0.0
    train_limit: int = 0  # 0 = every training image; else a uniform random subset of this size (drawn by seed)
    seed: int = 42
    hold_out_every: int = 120  # every 120th training image (500 of MNIST's) is never trained on: temperature scaling is
    # fitted on them. One number needs few images (cnn-fast's ECE 0.118 -> 0.009 with 500, 0.006 with 1,000), and the
    # fewer held out, the less accuracy it costs (simple_net over 7 seeds: 97.08% none, 97.06% 1 in 120, 97.02% 1 in 60)

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "activations", tuple(self.activations))

    def key(self) -> str:
        """A stable id of the config: the same settings give the same key (for dedupe)."""
        blob = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"], d["activations"] = list(self.hidden), list(self.activations)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f for f in cls.__dataclass_fields__}
        d = {"hold_out_every": 0, **d}  # a record from before images were held out trained on all of them
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known})

    def with_(self, **changes) -> TrainConfig:
        return replace(self, **changes)

    @property
    def pair(self) -> tuple[int, int] | None:
        """The two classes of a yes/no task ("3v7" -> (3, 7): 3 is yes), or None for all ten."""
        a, v, b = self.task.partition("v")
        return (int(a), int(b)) if v and a.isdecimal() and b.isdecimal() else None

    @property
    def n_outputs(self) -> int:
        return 1 if self.pair else 10

    @property
    def classes(self) -> tuple[str, ...]:
        """The names of the model's answers, as predict_proba orders them: the dataset's ten classes, or for a
        yes/no pair (no, yes) -- ("7", "3") for 3 vs 7."""
        names = DATASETS[self.dataset].classes if self.dataset in DATASETS else tuple(str(d) for d in range(10))
        return (names[self.pair[1]], names[self.pair[0]]) if self.pair else names

    @property
    def question(self) -> str:
        """What the model answers: '3 or 7?', 'Shirt or T-shirt/top?', or 'which digit?' / 'which class?'."""
        if self.pair:
            no, yes = self.classes
            return f"{yes} or {no}?"
        return f"which {DATASETS[self.dataset].noun if self.dataset in DATASETS else 'digit'}?"

    @property
    def title(self) -> str:
        return describe(self)


assert set(FIELDS) == set(TrainConfig.__dataclass_fields__), "every config field has its line in FIELDS"


def describe(config: TrainConfig) -> str:
    """The architecture as it is: the seeds' names only where the network is theirs (784-50-10 is simple_net,
    784-128-64-10 is an MLP, not simple_net)."""
    if config.kind == "linear":
        return f"linear1 784-{config.n_outputs}" + (" (by hand)" if config.form == "scratch" else "")
    if config.kind == "mlp":
        sizes = "-".join(str(s) for s in (784, *config.hidden, config.n_outputs))
        acts = [config.activations[min(i, len(config.activations) - 1)] for i in range(len(config.hidden))]
        name = "simple_net" if config.hidden == (50,) else "MLP"
        what = f"{name} {sizes}"
        if any(a != "relu" for a in acts):
            what += " " + "/".join(ACTIVATION_NAMES.get(a, a) for a in acts)
        return what + (" (by hand)" if config.form == "scratch" else "")
    return CNN_ARCHS[config.arch][0] if config.arch in CNN_ARCHS else "DigitCNN"


# ---------------------------------------------------------------- the check before any run


def check_config(config: TrainConfig, n_train: int | None = None, *, stored: bool = False) -> None:
    """Refuse settings that cannot train, with a message a student can act on: each field against FIELDS (with
    ``stored``, the ranges a record written before may hold), then the rules between fields."""
    problems = [p for name, f in FIELDS.items() if (p := f.problem(getattr(config, name), stored)) is not None]
    if not problems:  # the rules between fields read sound values only
        problems = _clashes(config, n_train)
    if problems:
        message = "; ".join(problems)
        raise ConfigError(message[0].upper() + message[1:] + ".")


def _clashes(config: TrainConfig, n_train: int | None) -> list[str]:
    problems = []
    if n_train is not None and config.batch_size > n_train:
        problems.append(f"the batch size {config.batch_size} is larger than the {n_train} training images")
    if config.hold_out_every == 1:
        problems.append("hold_out_every must be 0 (none) or from 2 to 10,000, not 1 (every image held out)")
    if config.kind == "mlp" and not config.hidden:
        problems.append("every hidden layer needs at least one unit")
    if config.form == "scratch" and config.optimizer != "sgd":
        problems.append("the from-scratch form steps by hand with plain SGD; pick the nn form for momentum or Adam")
    if config.kind == "mlp" and config.form == "scratch":
        if len(config.hidden) != 1:
            problems.append("simple_net by hand has one hidden layer (w1, b1, w2, b2): give one size, or write a "
                            "deeper net with nn.Sequential")
        if config.activations[:1] != ("relu",):
            problems.append("simple_net by hand uses ReLU, res.max(tensor(0.0)); pick ReLU or the nn form")
        if config.loss == "nll":
            problems.append("simple_net by hand ends in raw scores, not LogSoftmax: it trains with cross-entropy")
    if config.augment and config.augment_kind == "mirror" and config.dataset == "mnist":
        problems.append("mirrored digits are no digits (a mirrored 3 is not a 3): mirror augmentation is for "
                        "Fashion-MNIST; pick affine for MNIST")
    if bool(config.pair) != (config.loss == "mnist_loss"):
        problems.append("mnist_loss is for a two-class task such as 3 vs 7, and a two-class task needs mnist_loss")
    return problems
