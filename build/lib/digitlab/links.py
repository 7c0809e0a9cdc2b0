"""A setup shared by link: a stage's settings as URL parameters, and back.

``to_params`` writes what makes a run -- preset, layer sizes, activations, optimizer, learning rate, batch size,
epochs, training images, input scaling, dataset and task -- as short text values (``?preset=mlp-128-64&hidden=128-64&lr=0.01``).
``from_params`` reads them over a preset: every value is checked on its own, and one that is unknown or
unusable is left out with a one-line note saying why, so a mistyped link still opens the page.
The viewing pages (Features, Evaluate) keep their choices the same way: ``view_params`` and ``view_from_params``
(the model or models shown, the section open, the test image).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from .config import FIELDS, MAX_HIDDEN_LAYERS, ConfigError, TrainConfig, check_config
from .models import PRESETS, preset_for

# A link's parameter -> the config field it sets; each is read and checked by that field's schema (config.FIELDS).
PARAMS = {"optimizer": "optimizer", "lr": "lr", "batch": "batch_size", "epochs": "epochs", "limit": "train_limit",
          "norm": "norm", "dataset": "dataset", "task": "task", "hidden": "hidden", "act": "activations"}


@dataclass
class Setup:
    config: TrainConfig
    notes: list[str] = field(default_factory=list)  # one line per value left out
    extra: dict[str, str] = field(default_factory=dict)  # the page's own choices (image, model), as given


def to_params(config: TrainConfig, **extra: str | int) -> dict[str, str]:
    """The URL parameters of a setup; ``extra`` adds a page's own choices (``image=17``, ``model=<id>``)."""
    params = {"preset": config.preset, "optimizer": config.optimizer, "lr": repr(config.lr),
              "batch": str(config.batch_size), "epochs": str(config.epochs), "limit": str(config.train_limit),
              "norm": config.norm, "dataset": config.dataset, "task": config.task}
    if config.kind == "mlp":
        params["hidden"] = "-".join(str(h) for h in config.hidden)
        params["act"] = "-".join(config.activations)
    return params | {k: str(v) for k, v in extra.items()}


def from_params(params: dict[str, str], default: TrainConfig, page_keys: tuple[str, ...] = ("image", "model"),
                ) -> Setup:
    """The setup a link describes, starting from ``default`` (the page's default preset); a preset it names is taken
    as it runs on the default's dataset (preset_for: Fashion-MNIST's recipe where it differs)."""
    notes: list[str] = []
    base = default
    preset = params.get("preset")
    if preset is not None:
        if preset in PRESETS and PRESETS[preset].kind == default.kind:
            base = preset_for(preset, default.dataset)
        elif preset != default.preset:
            notes.append(f"preset={preset!r} left out: not a {default.kind} preset on this page")
    changes: dict = {}
    for name, field_name in PARAMS.items():
        if name not in params:
            continue
        if name in ("hidden", "act") and default.kind != "mlp":
            notes.append(f"{name}={params[name]!r} left out: this page's models have no hidden layers to set")
            continue
        try:
            changes[field_name] = _read(field_name, params[name])
        except ValueError as e:
            notes.append(f"{name}={params[name]!r} left out: {e}")
    config = base.with_(**changes)
    if "activations" in changes or "hidden" in changes:  # one activation per layer, the last repeated
        acts = config.activations or ("relu",)
        config = config.with_(activations=tuple(acts[min(i, len(acts) - 1)] for i in range(len(config.hidden))))
    try:
        check_config(config)
    except ConfigError as e:  # values fine one by one, not together: the page opens on the preset
        notes.append(f"the link's settings do not go together ({e}); showing {base.preset} instead")
        config = base
    extra = {k: params[k] for k in page_keys if k in params}
    unknown = sorted(set(params) - set(PARAMS) - {"preset", *page_keys})
    notes += [f"{k}={params[k]!r} left out: not a setting this page knows" for k in unknown]
    return Setup(config, notes, extra)


def _read(field_name: str, text: str):
    """A parameter's value, checked by its field's schema: a list (layer sizes, activations) joined by '-'."""
    schema = FIELDS[field_name]
    if schema.kind == "sizes":
        try:
            sizes = tuple(int(s) for s in text.split("-") if s.strip())
        except ValueError:
            sizes = ()
        if not sizes:
            raise ValueError(f"1 to {MAX_HIDDEN_LAYERS} layer sizes of {schema.lo}..{schema.hi}, joined by '-'")
        value = sizes
    elif schema.kind == "names":
        value = tuple(s for s in text.split("-") if s)
        if not value:
            raise ValueError(f"activations joined by '-', each one of {', '.join(schema.choices)}")
    else:
        return schema.parse(text)
    if (said := schema.problem(value)) is not None:
        raise ValueError(said)
    return value


# ---------------------------------------------------------------- a viewing page's choices (Features, Evaluate)


def slug(label: str) -> str:
    """A section's name as the address writes it: "Confusion matrix" -> "confusion-matrix"."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def view_params(model: str = "", models: Sequence[str] = (), look: str = "", image: int | None = None,
                ) -> dict[str, str]:
    """A viewing page's choices as URL parameters: one model or several side by side (ids joined by ','), the
    section open (its slug), the test image."""
    params = {"model": model, "models": ",".join(models), "look": slug(look) if look else "",
              "image": "" if image is None else str(image)}
    return {k: v for k, v in params.items() if v}


@dataclass
class View:
    """What a link asks a viewing page to show, each value checked; ``notes``: one line per value left out."""

    models: list[str] = field(default_factory=list)  # one (model=) or several side by side (models=)
    side_by_side: bool = False
    look: str = ""  # the section's label
    image: int | None = None
    notes: list[str] = field(default_factory=list)


def view_from_params(params: dict[str, str], model_ids: Collection[str], looks: Sequence[str], n_images: int = 0,
                     most: int = 4) -> View:
    """The choices a link gives a viewing page: ``model_ids`` are the models it may show, ``looks`` its sections'
    labels, ``n_images`` its test images (0: it picks none), ``most`` how many models side by side (0: one only)."""
    view = View()
    known = {"model", "look", *(("models",) if most else ()), *(("image",) if n_images else ())}
    if "model" in params:
        if params["model"] in model_ids:
            view.models = [params["model"]]
        else:
            view.notes.append(f"model={params['model']!r} left out: no such model in this class's store")
    if most and "models" in params:
        ids = [i for i in params["models"].split(",") if i]
        missing = [i for i in ids if i not in model_ids]
        if missing:
            view.notes.append(f"models: {', '.join(map(repr, missing))} left out: no such model in this class's store")
        found = list(dict.fromkeys(i for i in ids if i in model_ids))
        if len(found) > most:
            view.notes.append(f"models: only the first {most} shown side by side")
        if found:
            view.models, view.side_by_side = found[:most], True
    if "look" in params:
        by_slug = {slug(label): label for label in looks}
        if params["look"] in by_slug:
            view.look = by_slug[params["look"]]
        else:
            view.notes.append(f"look={params['look']!r} left out: use one of {', '.join(by_slug)}")
    if n_images and "image" in params:
        text = params["image"]
        if text.isdecimal() and int(text) < n_images:
            view.image = int(text)
        else:
            view.notes.append(f"image={text!r} left out: a test image is a number from 0 to {n_images - 1}")
    view.notes += [f"{k}={params[k]!r} left out: not a setting this page knows" for k in sorted(set(params) - known)]
    return view
