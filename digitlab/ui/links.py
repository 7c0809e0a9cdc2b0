"""A setup shared by link: the Linear, MLP and CNN pages keep their settings in the address (``st.query_params``).

``restore_setup`` runs before the page's widgets: when the address holds a setup this session has not seen yet (a
link just opened), it reads it with ``links.from_params`` and puts each value into its widget's session-state key,
so every widget opens on it. ``share_setup`` runs once the page has built its config: it writes the setup back into
the address, shows the notes about values a link had to leave out, offers "Link to this setup", and, when the run
a link names is already in the model store, shows it (the queue answers it from the store, as for Train).

The viewing pages (Features, Evaluate) keep their choices the same way (``ViewPage``): ``restore_view`` before the
pickers (the model or models shown, the section open, the test image), ``share_view`` once they have drawn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

import streamlit as st

from .. import data as data_mod
from ..explore import first_index_of
from ..links import from_params, to_params, view_from_params, view_params
from ..models import PRESETS, TrainConfig, preset_for
from .resources import dataset_models, get_store, stored_models
from .training import lr_key, settings_key, start_training

FRAME_PARAMS = ("present", "dataset")  # the frame's own (presenter mode, the dataset): kept, never read as a setting
# Every name a setup may write; only these are removed from the address when the setup no longer has them.
SETUP_PARAMS = frozenset(to_params(PRESETS["simple_net"], model="", image="0"))


@dataclass(frozen=True)
class LinkedPage:
    """What a stage page's link restores: its widget-key prefix, the preset it opens on, and the page's own
    choices a link may carry (a stored model, a test image), by their widgets' keys."""

    prefix: str  # "lin", "mlp", "cnn": the preset picker is <prefix>_preset, the settings <prefix>_<preset>_...
    default: str  # the preset the page opens on
    network: bool = False  # the MLP page: hidden layers, activation, optimizer and input scaling are widgets too
    model_key: str = ""  # the page's model picker
    image_key: str = ""  # the page's test-image picker (<key>_digit, <key>_nth)

    @property
    def extras(self) -> tuple[str, ...]:
        return tuple(k for k, on in (("model", self.model_key), ("image", self.image_key)) if on)


def _address_params() -> dict[str, str]:
    return {k: v for k, v in st.query_params.to_dict().items() if k not in FRAME_PARAMS}


def restore_setup(page: LinkedPage, data: data_mod.MNIST) -> None:
    """Before the page's widgets: a link's setup into their session-state keys, once per link opened."""
    params = _address_params()
    if not params or params == st.session_state.get(f"{page.prefix}_link_seen"):
        _hold_link(page.prefix)
        return
    st.session_state[f"{page.prefix}_link_seen"] = params
    setup = from_params(params, preset_for(page.default, data.spec.key), page.extras)
    config, notes = setup.config, list(setup.notes)
    k = settings_key(page.prefix, config.preset, data.spec.key)
    values = {f"{page.prefix}_preset": config.preset, lr_key(page.prefix, config.preset, data.spec.key): float(config.lr),
              f"{k}_bs": config.batch_size, f"{k}_epochs": config.epochs, f"{k}_limit": config.train_limit}
    preset = preset_for(config.preset, data.spec.key)
    if page.network:
        values |= {f"{k}_hidden": ", ".join(str(h) for h in config.hidden), f"{k}_opt": config.optimizer,
                   f"{k}_norm": config.norm}
        acts = _activation_option(preset.activations, config)
        if acts is None:
            notes.append(f"act={params.get('act')!r} left out: this page sets one activation for every layer "
                         "(or the preset's own)")
        else:
            values[f"{k}_act"] = acts
    else:
        notes += [f"{name}={params[name]!r} left out: this page has no setting for it"
                  for name, field in (("optimizer", "optimizer"), ("norm", "norm"))
                  if name in params and getattr(config, field) != getattr(preset, field)]
    notes += _restore_choices(page, setup.extra, data, values)
    _set_link(page.prefix, values)
    st.session_state[f"{page.prefix}_link_notes"] = notes
    st.session_state[f"{page.prefix}_link_opened"] = "model" in setup.extra  # share_setup: the run, if stored


HOLD_RUNS = 3  # the page runs after a link opened in which its values are set again (``_hold_link``)


def _set_link(prefix: str, values: dict) -> None:
    """A link's values into their widgets' keys, held for the next HOLD_RUNS runs."""
    st.session_state.update(values)
    st.session_state[f"{prefix}_link_hold"] = (values, HOLD_RUNS)


def _hold_link(prefix: str) -> None:
    """In the few runs after a link opened, its values set again where they still stand. Streamlit tells the browser a
    value that session state holds only in the run that put it there; a browser whose drawing of that run was cut
    short by the next one (the first deep link after start-up runs twice: once the old multipage way, once through
    app.py) drew the boxes with their defaults (a Fashion link's 1 epoch shown as the preset's 15). A value the
    student has changed since is left alone."""
    if not (held := st.session_state.get(f"{prefix}_link_hold")):
        return
    values, runs = held
    for key, value in values.items():
        if key in st.session_state and st.session_state[key] == value:
            st.session_state[key] = value  # set in this run: sent to the browser with the widget
    st.session_state[f"{prefix}_link_hold"] = (values, runs - 1) if runs > 1 else None


def _activation_option(preset_acts: tuple[str, ...], config: TrainConfig) -> tuple[str, ...] | None:
    """The Activation box's option that builds the link's activations: the preset's own, or one for every layer."""
    n = len(config.hidden)

    def per_layer(acts: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(acts[min(i, len(acts) - 1)] for i in range(n))

    wanted = per_layer(config.activations)
    if per_layer(preset_acts) == wanted:
        return preset_acts
    return wanted[:1] if len(set(wanted)) == 1 else None


def _restore_choices(page: LinkedPage, extra: dict[str, str], data: data_mod.MNIST, values: dict) -> list[str]:
    """The page's own choices from a link (a stored model, a test image) into ``values``; a note for each that cannot
    be used."""
    notes = []
    if "model" in extra:
        if any(i.id == extra["model"] for i in stored_models()[0]):
            values[page.model_key] = extra["model"]
        else:
            notes.append(f"model={extra['model']!r} left out: no such model in this class's store")
    if "image" in extra:
        text, n = extra["image"], len(data.test_labels)
        if text.isdecimal() and int(text) < n:
            values |= _image_choice(page.image_key, int(text), data)
        else:
            notes.append(f"image={text!r} left out: a test image is a number from 0 to {n - 1}")
    return notes


def _image_choice(image_key: str, index: int, data: data_mod.MNIST) -> dict:
    """The test-image picker's keys (``pickers.test_image_picker``) for test image ``index``: its class, and which of
    them."""
    digit = int(data.test_labels[index])
    return {f"{image_key}_digit": digit, f"{image_key}_nth": int((data.test_labels[:index] == digit).sum())}


def _chosen(page: LinkedPage, data: data_mod.MNIST) -> dict[str, str]:
    """The page's own choices as they stand (read from their widgets' keys), for the address."""
    out = {}
    if page.model_key and st.session_state.get(page.model_key):
        out["model"] = str(st.session_state[page.model_key])
    digit, nth = (st.session_state.get(f"{page.image_key}_{w}") for w in ("digit", "nth"))
    if page.image_key and digit is not None and nth is not None:
        out["image"] = str(first_index_of(data.test_labels, int(digit), int(nth)))
    return out


def share_setup(page: LinkedPage, config: TrainConfig, data: data_mod.MNIST) -> None:
    """Once the page has built its config: the setup into the address, the link's notes, "Link to this setup", and
    the run a link just opened, if the model store has it."""
    params = to_params(config, **_chosen(page, data))
    _into_address(page.prefix, params, lambda name: name in SETUP_PARAMS, "This link's setup opened")
    with st.expander("🔗 Link to this setup"):
        st.code(setup_address(params), language=None, wrap_lines=True)
        st.caption("Opening this address shows this page with every setting above as it is now; if that exact "
                   "run is in the model store, it is shown at once instead of trained again.")
    if (opened := st.session_state.pop(f"{page.prefix}_link_opened", None)) is not None:
        stored_run(page, config, data, keep_model=opened)


def setup_address(params: dict[str, str]) -> str:
    """The page's address with the setup (and presenter mode, when on) as its query."""
    base = (st.context.url or "").split("?")[0]
    present = {"present": "1"} if st.query_params.get("present") == "1" else {}
    return f"{base}?{urlencode(params | present, safe=',')}"  # ids side by side read as a list


def stored_run(page: LinkedPage, config: TrainConfig, data: data_mod.MNIST, keep_model: bool) -> None:
    """The run a link names, shown from the model store when it is there (the training panel below draws it).
    ``keep_model``: the link also names a model to look inside, which this run must not replace."""
    state_key = f"{page.prefix}_job"
    if st.session_state.get(state_key) or get_store().find(config, data.fingerprint()) is None:
        return
    if snap := start_training(config, data, state_key, runs_key=f"{page.prefix}_runs"):
        st.success("This exact run is in the model store: its curves and result are shown below.", icon="🔗")
        if keep_model:  # the CNN page looks inside a run that has just finished, unless it has seen it
            st.session_state[f"{page.prefix}_view_job"] = (snap.id, snap.model_id)


# ---------------------------------------------------------------- the viewing pages: Features, Evaluate


@dataclass(frozen=True)
class ViewPage:
    """What a viewing page's link restores, by its widgets' keys: the model (or, on Evaluate, the models side by
    side), the section open, and the test image where the page picks one."""

    prefix: str  # "feat", "eval"
    model_key: str  # the one-model picker
    look_key: str  # the section chooser
    looks: tuple[str, ...]  # its sections' labels
    image_key: str = ""  # the test-image picker (<key>_digit, <key>_nth)
    compare_key: str = ""  # the "Compare with other models" toggle ...
    many_key: str = ""  # ... and the side-by-side picker it opens


def restore_view(page: ViewPage, data: data_mod.MNIST) -> None:
    """Before the page's pickers: a link's choices into their session-state keys, once per link opened."""
    params = _address_params()
    if not params or params == st.session_state.get(f"{page.prefix}_link_seen"):
        _hold_link(page.prefix)
        return
    st.session_state[f"{page.prefix}_link_seen"] = params
    view = view_from_params(params, {i.id for i in dataset_models()}, page.looks,
                            n_images=len(data.test_labels) if page.image_key else 0, most=4 if page.many_key else 0)
    values = {}
    if view.models:
        values[page.model_key] = view.models[0]
        if page.many_key:
            values[page.compare_key] = view.side_by_side
            if view.side_by_side:
                values[page.many_key] = view.models
    if view.look:
        values[page.look_key] = view.look
    if view.image is not None:
        values |= _image_choice(page.image_key, view.image, data)
    _set_link(page.prefix, values)
    st.session_state[f"{page.prefix}_link_notes"] = view.notes


def _into_address(prefix: str, params: dict[str, str], ours: Callable[[str], bool], opened: str) -> None:
    """The page's choices into the address (the previous ones of ``ours`` that no longer apply go), marked as the
    page's own; then, once, what the link that opened it could not set."""
    now = st.query_params.to_dict()
    wanted = {k: v for k, v in now.items() if not (k not in FRAME_PARAMS and ours(k) and k not in params)} | params
    if wanted != now:  # the whole address in one message: the browser never holds half of a change
        st.query_params.from_dict(wanted)
    st.session_state[f"{prefix}_link_seen"] = _address_params()  # this address is the page's own now
    if notes := st.session_state.pop(f"{prefix}_link_notes", None):
        st.warning(f"{opened}, less what this page could not use:\n" + "\n".join(f"- {n}" for n in notes), icon="🔗")


def share_view(page: ViewPage, models: list[str], look: str, image: int | None = None,
               side_by_side: bool = False) -> None:
    """Once the pickers have drawn: the choices into the address, the link's notes, and "Link to this setup"."""
    params = view_params(model="" if side_by_side else models[0], models=models if side_by_side else (), look=look,
                         image=image)
    _into_address(page.prefix, params, lambda name: True, "This link opened")
    with st.expander("🔗 Link to this setup"):
        st.code(setup_address(params), language=None, wrap_lines=True)
        st.caption("Opening this address shows this page on the same " + ("models" if side_by_side else "model")
                   + (", section and test image." if image is not None else " and section."))
