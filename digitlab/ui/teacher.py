"""The teacher's page: every run of the class (cancel, pause, resume), the limit on one student's run, the stored
models (rename, remove), the class's drawings (remove) and the store's health.

Nothing here shows without the teacher key, set when the server starts (DIGITLAB_TEACHER_KEY) and compared in
constant time (``teacher_key.teacher_key_ok``); with no key set, nobody manages the class from a browser. A session that
gave the key keeps a flag, never the key. Every action checks the flag again.
"""

from __future__ import annotations

import time

import streamlit as st

from ..collection import Collection, CollectionError
from ..store import StoreError
from ..teacher_key import ROOM_TRIES_PER_MINUTE, TRIES_PER_MINUTE, guard, teacher_key_set
from .pickers import model_label
from .resources import TEACHER, get_queue, get_store, is_teacher, pseudonym_of, stored_models
from .text import duration_text, status
from .together import owner_name

FLAG = TEACHER
RUNS_EVERY_S = 3.0  # the runs list redraws itself this often


def teacher_unlocked() -> bool:
    """The key form, until this session has given the right key; True once it has."""
    if is_teacher():
        c1, c2 = st.columns([5, 1])
        c1.success("Teacher mode: you can manage every run, model and drawing of the class.", icon="🎓")
        if c2.button("Lock", key="teacher_lock", help="Leave teacher mode in this browser tab."):
            st.session_state.pop(FLAG, None)
            st.rerun()
        wrong_keys_note()
        return True
    if not teacher_key_set():
        st.info("No teacher key was set when this server started, so nobody can manage the class from a browser. "
                "Start the server with DIGITLAB_TEACHER_KEY set (see the README's “For the teacher”); on the "
                "laptop itself, `python -m digitlab models` lists and checks the model store.")
        return False
    st.text_input("Teacher key", type="password", key="teacher_key_input", on_change=_check_key,
                  help="The key the server was started with (DIGITLAB_TEACHER_KEY). Press Enter or Unlock.")
    st.button("Unlock", key="teacher_unlock")  # a click commits the key typed above, which _check_key reads
    if st.session_state.pop("teacher_key_wrong", False):
        st.error("That is not the teacher key.")
    if wait := st.session_state.pop("teacher_key_wait", 0):
        st.warning(f"Too many keys were tried from here in the last minute: try again in {duration_text(wait)}. "
                   "The key was not checked.", icon="⏳")
    st.caption("Students see the class's runs in the sidebar of every page; managing them needs the key.")
    return False


def _check_key() -> None:
    """The key box's callback: the flag when the key is right, a note when not; the box is emptied either way,
    so the key is never kept in the session."""
    given = st.session_state.get("teacher_key_input", "")
    st.session_state["teacher_key_input"] = ""
    if not given:
        return
    address = st.context.ip_address  # None on this machine; counted per address for the whole server, not per tab
    answer = guard().check(given, address if isinstance(address, str) else None)
    if answer.wait_s:
        st.session_state["teacher_key_wait"] = answer.wait_s
    elif answer.ok:
        st.session_state[FLAG] = True
    else:
        time.sleep(1.0)  # guessing costs a second a try
        st.session_state["teacher_key_wrong"] = True


def wrong_keys_note() -> None:
    """For the teacher: the wrong keys tried in the last hour, and from where."""
    wrong = guard().wrong_since(3600)
    if wrong:
        where = sorted({w.address for w in wrong})
        st.caption(f"⚠️ {len(wrong)} wrong key(s) tried in the last hour, from {', '.join(where[:5])}"
                   + (f" and {len(where) - 5} more addresses" if len(where) > 5 else "") + ". Each address gets "
                   f"{TRIES_PER_MINUTE} tries, then waits a minute, then two...; the room's other machines "
                   f"{ROOM_TRIES_PER_MINUTE} a minute together.")


# ---------------------------------------------------------------- runs


def teacher_runs() -> None:
    st.header("Runs")
    st.fragment(run_every=RUNS_EVERY_S)(_runs)()


def _runs() -> None:
    queue = get_queue()
    active = queue.active()
    if not active:
        st.caption("Nothing is training or waiting.")
        return
    for snap in active:
        c1, c2, c3 = st.columns([6, 1, 1])
        who = (f"started by {owner_name(snap.owner)}" if snap.owner else "started for the class") + (
            f", {len(snap.watchers)} student(s) waiting on it" if snap.watchers else "")
        c1.markdown(f"**{snap.config.title}** · {snap.config.preset} · {snap.config.epochs} epoch(s), "
                    f"batch {snap.config.batch_size} · {who}")
        c1.progress(snap.progress, text=status(snap))
        if c2.button("Cancel", key=f"teacher_cancel_{snap.id}", help="Stop it for everyone; finished epochs are "
                     "saved as a model."):
            _act(queue.cancel, snap.id, f"Cancelled {snap.config.title}.")
        if snap.state == "running":
            if snap.paused and c3.button("Resume", key=f"teacher_resume_{snap.id}"):
                _act(queue.resume, snap.id, f"Resumed {snap.config.title}.")
            elif not snap.paused and c3.button("Pause", key=f"teacher_pause_{snap.id}",
                                               help="Hold it between batches until you resume it; the runs "
                                                    "behind it wait too."):
                _act(queue.pause, snap.id, f"Paused {snap.config.title}.")


def _act(action, job_id: str, done: str) -> None:
    if not is_teacher():  # the flag, checked again for every action
        st.error("Teacher mode is locked.")
        return
    if not action(job_id):
        st.warning("That run has already finished or changed; the list is up to date now.")
    else:
        st.toast(done)
    st.rerun(scope="app")


# ---------------------------------------------------------------- limits


def teacher_limits() -> None:
    st.header("Limits")
    queue = get_queue()
    now = queue.limit_s
    st.markdown(f"A student's run is refused when it would take longer than **"
                f"{duration_text(now) if now else 'no limit'}** on this server (estimated from the speed measured "
                "on earlier runs of that kind of model); runs you start here or on the command line are not limited.")
    minutes = st.number_input("Longest run a student may start (minutes, 0 = no limit)", min_value=0.0,
                              max_value=240.0, value=round((now or 0) / 60, 1), step=0.5, key="teacher_limit")
    if st.button("Set the limit", key="teacher_set_limit") and is_teacher():
        queue.limit_s = minutes * 60 if minutes > 0 else None
        st.toast("The limit is set for the whole class.")
        st.rerun()


# ---------------------------------------------------------------- models


TARGET, PICKER, SURE, CONFIRMED = "teacher_target", "teacher_model", "teacher_model_sure", "teacher_confirmed"


def teacher_models() -> None:
    """Rename or remove one stored model. The model acted on is the id captured when the teacher picked it
    (``TARGET``), never whatever the box shows after a rerun; the removal's tick belongs to that id and is cleared
    when the choice changes."""
    st.header("Models")
    if done := st.session_state.pop("teacher_models_done", None):
        st.success(done, icon="🎓")
    infos, _ = stored_models()
    if not infos:
        st.caption("No trained models in the store.")
        return
    by_id = {i.id: i for i in infos}
    chosen = model_target(list(by_id))
    st.selectbox("Model", list(by_id), format_func=lambda i: f"{model_label(by_id[i])} · {i}", key=PICKER,
                 on_change=_retarget)
    if name := get_store().name(chosen):
        st.caption(f"Called “{name}”.")
    c1, c2 = st.columns(2)
    with c1:
        name = st.text_input("New name", key="teacher_model_name", max_chars=80)
        if st.button("Rename", key="teacher_rename", disabled=not name.strip()) and is_teacher():
            _store_action(lambda: get_store().rename(chosen, name), f"{chosen} is now called “{name.strip()}”.")
    with c2:
        st.checkbox(f"Yes, remove {chosen} for everyone", key=SURE, on_change=_confirm, args=(chosen,))
        sure = st.session_state.get(CONFIRMED) == chosen and bool(st.session_state.get(SURE))
        if st.button("Remove model", key="teacher_remove", disabled=not sure) and is_teacher() and sure:
            st.session_state.pop(CONFIRMED, None)  # the tick goes with the model on the next run (model_target)
            _store_action(lambda: get_store().delete(chosen), f"Removed {chosen}.")


def model_target(ids: list[str]) -> str:
    """The model the teacher picked, by id, kept across reruns (a rename that changes its label, a tick, another
    model stored meanwhile); the first only when none is picked yet or the picked one is gone. The box is set to it
    before it draws, so what it shows is what an action acts on."""
    target = st.session_state.get(TARGET)
    if target not in ids:
        if target is not None:
            _clear_confirmation()
        target = st.session_state[TARGET] = ids[0]
    st.session_state[PICKER] = target
    return target


def _retarget() -> None:
    """The box's callback: the new choice becomes the target, and any removal ticked for the old one is cleared."""
    if st.session_state.get(PICKER) != st.session_state.get(TARGET):
        _clear_confirmation()
    st.session_state[TARGET] = st.session_state.get(PICKER)


def _confirm(target: str) -> None:
    """The tick's callback: the confirmation names the model it was given for."""
    st.session_state[CONFIRMED] = target if st.session_state.get(SURE) else None


def _clear_confirmation() -> None:
    st.session_state[SURE] = False
    st.session_state.pop(CONFIRMED, None)


def _store_action(action, done: str) -> None:
    try:
        action()
    except (StoreError, OSError) as e:
        st.error(f"Could not do that: {e}")
        return
    st.session_state["teacher_models_done"] = done  # said under the Models header after the rerun
    st.rerun()  # every section shows the store as it is now


# ---------------------------------------------------------------- drawings


def teacher_drawings() -> None:
    st.header("Drawings in the class collection")
    collection = Collection()
    try:
        entries = collection.list()
    except CollectionError as e:
        st.error(f"The class collection cannot be opened: {e}")
        return
    if not entries:
        st.caption("The collection is empty.")
        return
    by_id = {e.id: e for e in reversed(entries)}  # newest first
    names = {e.saved_by: pseudonym_of(e.saved_by) for e in entries}
    st.caption(f"{len(entries)} drawings, from {len({n for n in names.values() if n})} named students.")
    picked = st.multiselect("Drawings to remove", list(by_id), key="teacher_drawings",
                            format_func=lambda i: f"a {by_id[i].label} · {names.get(by_id[i].saved_by) or by_id[i].source}"
                                                  f" · {by_id[i].created.replace('T', ' ')[:16]} · {i}")
    if picked:
        cols = st.columns(min(len(picked), 8))
        for col, entry_id in zip(cols, picked[:8]):
            col.image(collection.png(entry_id), caption=f"a {by_id[entry_id].label}", width=84)
    if st.button(f"Remove {len(picked)} drawing(s)", key="teacher_remove_drawings", disabled=not picked) \
            and is_teacher():
        try:
            for entry_id in picked:
                collection.delete(entry_id)
        except (CollectionError, OSError) as e:
            st.error(f"Could not remove every drawing: {e}")
            return
        st.success(f"Removed {len(picked)} drawing(s).")


# ---------------------------------------------------------------- the store's health


def teacher_store_health() -> None:
    st.header("The model store")
    store = get_store()
    for check in (store.check_writable, Collection().check_writable):
        try:
            check()
        except StoreError as e:
            st.error(f"Nothing can be saved: {e}")
    _, problems = stored_models()
    leftovers = store.leftovers()
    if not problems and not leftovers:
        st.caption(f"Every file in {store.root} is a usable model.")
        return
    for p in problems:
        st.markdown(f"- `{p.name}`: {p.reason}")
    if leftovers:
        st.markdown(f"{len(leftovers)} temporary file(s) left by saves that never finished.")
        if st.button("Remove them", key="teacher_tidy") and is_teacher():
            for line in store.tidy():
                st.caption(line)
