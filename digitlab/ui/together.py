"""The class together, on every page: who this browser is (its pseudonym, in the sidebar), following the teacher,
and the question the teacher put to the class.

A browser is known by a random token its own storage keeps (``localStorage``, read by a small component; never its
address): ``room_book.browser_key`` hashes it, and that key is the session's owner (``resources.owner_id``) for its
runs, drawings and answers, across reloads and tabs. The class bar (``class_bar``, from ``page_setup``): the banner
while following the teacher, drawn with the page (each move reruns it), then a fragment that polls (every FOLLOW_S
while following, CALM_S otherwise) for the move to the teacher's page and setup, the question and its answer box,
the answers against the truth once the run has ended. A poll draws nothing it need not: 60 followers poll twice a
second.
"""

from __future__ import annotations

import streamlit as st

from ..collection import Collection, CollectionError
from ..room_book import ADJECTIVES, ANIMALS, Question, RoomBook, RoomError, browser_key
from .analyses import model_analysis
from .fool import round_note
from .resources import (
    BROWSER,
    PAGES,
    get_data,
    get_queue,
    is_teacher,
    load_model,
    needs_book,
    page_fragment,
    pseudonym_of,
)
from .room import seen

FOLLOW_S = 0.5  # the class bar's poll while following: the teacher's move reaches a student within this and a page run
CALM_S = 2.0  # ... while nobody leads (a question, a round, the teacher starting to lead are seen within this)
FAST = "class_bar_fast"  # session state: which of the two polls this page drew
PAGE = "page_title"  # session state: the title of the page this session is on
NOT_FOLLOWING = "follow_opt_out"
HELD = "train_held"  # session state: whether this page was drawn with the teacher holding Train
LEAD_N = "lead_n"  # session state: the teacher's last move this session followed
MOVE = "follow_move"  # session state: the teacher's page and setup, for the start of the next page run
BANNER = "follow_banner"  # session state: the lead's page the banner names
NAMING = "name_dialog"  # session state: the change-of-name dialog is open

# Reads (or makes) the browser's token in its own storage and sends it; drawn only until the session has it. The token is 128 random bits; the server keeps only a hash of it.
_STORAGE_JS = """
export default function(component) {
  const { data, setStateValue } = component;
  if (data) return;
  let token = null;
  try { token = window.localStorage.getItem("digitlab-browser"); } catch (e) {}
  if (!token || !/^[0-9a-f]{32}$/.test(token)) {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    token = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    try { window.localStorage.setItem("digitlab-browser", token); } catch (e) {}
  }
  setStateValue("token", token);
}
"""
_storage = st.components.v2.component("digitlab_browser", js=_STORAGE_JS)


def book() -> RoomBook | None:
    """The class's book, or None when the collection's database cannot be opened (the pages say so elsewhere)."""
    try:
        return Collection().book
    except CollectionError:
        return None


def _known(token: object) -> None:
    try:
        st.session_state[BROWSER] = browser_key(token)
    except RoomError:
        pass  # not a token (a client can send anything): this session stays a session


def pseudonym(key: str | None = None) -> str:
    """The pseudonym of a browser key (this browser's by default); "" when it has none or the book is closed."""
    return pseudonym_of(key or st.session_state.get(BROWSER) or "")


def class_bar(title: str) -> None:
    """On every page, after its title: this browser in the room, its pseudonym, and the class bar."""
    st.session_state[PAGE] = title
    if token := st.session_state.get("browser_token"):  # the token, as the component or a test hands it over
        _known(token)
    with st.sidebar:
        identity()
    seen(title)
    together()  # (the teacher's page is published from it: it runs inline in this run too)


def identity() -> None:
    """The sidebar's "You are ...": read from the browser's storage (once a session), changeable to another pair."""
    if not st.session_state.get(BROWSER):  # once a session: drawn until the browser has said its token
        result = _storage(key="browser_storage", data=False, on_token_change=lambda: None)
        if result is not None and getattr(result, "token", None):
            _known(result.token)
    if is_teacher():
        follow_me_toggle("lead_sidebar")
    if not (name := pseudonym()):
        return
    # One button (the dialog's boxes are drawn only when it opens: a sidebar drawn on every page run stays small)
    st.button(f"🦦 You are **{name}**", key="name_open", on_click=_dialog, args=(True,),
              help="Your name in this class: on your runs, drawings and answers. Nobody is asked for a real name; "
                   "this one is kept by this browser. Click to change it.")
    if st.session_state.get(NAMING):
        change_name(name)


def _dialog(open_: bool) -> None:
    st.session_state[NAMING] = open_


def _closed() -> None:
    _dialog(False)


@st.dialog("Your name in this class", on_dismiss=_closed)
def change_name(name: str) -> None:
    """Another adjective and animal from the two lists (never free text: no real name can be typed here)."""
    adjective, animal = name.split(" ")[:2]
    c1, c2 = st.columns(2)
    new_adj = c1.selectbox("Adjective", ADJECTIVES, index=ADJECTIVES.index(adjective), key="name_adj")
    new_animal = c2.selectbox("Animal", ANIMALS, index=ANIMALS.index(animal), key="name_animal")
    if st.button("Use this name", key="name_use", type="primary"):
        try:
            book().rename(st.session_state[BROWSER], new_adj, new_animal)
            _dialog(False)
            st.rerun()
        except (RoomError, CollectionError) as e:
            st.error(str(e))


@needs_book()
def follow_me_toggle(key: str) -> None:
    """The teacher's "Class, follow me" (in the sidebar and on the Teacher page): drawn as the lead is now, and
    changing only the lead (two toggles each with a value of its own undid each other, rerun after rerun)."""
    if (b := book()) is None:
        return
    st.session_state[key] = b.lead()["on"]
    st.toggle("📣 Class, follow me", key=key, on_change=_toggled, args=(key,),
              help="Every student who has not opted out is taken to the page you open, with your setup, within a "
                   "couple of seconds; they see a banner “Following the teacher” and can leave it.")


@needs_book()
def _toggled(key: str) -> None:
    if not is_teacher() or (b := book()) is None:
        return
    title = st.session_state.get(PAGE, "")
    here = {} if title in ("", "Teacher") else {"page": title, "query": _address()}
    b.set_lead(on=bool(st.session_state.get(key)), **here)


def _address() -> dict:
    return {k: v for k, v in st.query_params.to_dict().items() if k != "present"}


def _publish(b: RoomBook, title: str) -> dict:
    """The teacher's page and setup (the address, less presenter mode) as the class's lead; the lead now."""
    query = _address()
    lead = b.lead()
    if (lead["page"], lead["query"]) != (title, query):
        lead = b.set_lead(page=title, query=query)
    return lead


@needs_book(quiet=True)
def together() -> None:
    """The class bar: following the teacher, and the teacher's question. Nothing at all when neither is on. It looks
    every FOLLOW_S while this browser follows the teacher (or leads), every CALM_S otherwise: the class's polls cost
    the server half as much as at one a second while nobody leads, and a move reaches a following class sooner."""
    if (b := book()) is None:
        return
    lead, title = b.lead(), st.session_state.get(PAGE, "")
    st.session_state[FAST] = _fast(lead)
    if lead["on"] and title != "Teacher":  # drawn with the page, not at each poll (the page reruns on every move)
        if is_teacher():
            lead = _publish(b, title)
            st.caption(f"📣 The class follows you ({lead['page'] or 'not moved yet'}). Turn it off on the Teacher "
                       "page or in the sidebar.")
        else:  # (a teacher who reloaded must reach the key box: the Teacher page never follows)
            _banner(lead)
    _poll(title, st.session_state[FAST])()


def _fast(lead: dict) -> bool:
    return bool(lead["on"]) and (is_teacher() or not st.session_state.get(NOT_FOLLOWING))


def _poll(title: str, fast: bool):
    """The class bar's poll on the page ``title``, one fragment per page (``resources.page_fragment``)."""
    return page_fragment("class_bar_poll_following" if fast else "class_bar_poll_calm", title, _bar,
                         FOLLOW_S if fast else CALM_S)


@needs_book(quiet=True)
def _bar() -> None:
    if (b := book()) is None:
        return
    title = st.session_state.get(PAGE, "")
    lead = b.lead()
    if _fast(lead) != st.session_state.get(FAST):
        st.rerun(scope="app")  # the teacher started (or stopped) leading: the other poll from now on
    if (b.held_for() > 0) != st.session_state.get(HELD, False) and not is_teacher():
        st.session_state[HELD] = not st.session_state.get(HELD, False)
        st.rerun(scope="app")  # the page's Train buttons close (or open again) at once
    if lead["on"] and is_teacher() and title != "Teacher":
        _publish(b, title)
    elif lead["on"] and not is_teacher() and title != "Teacher" and not st.session_state.get(NOT_FOLLOWING):
        _follow(lead, title)
    if (q := b.question()) is not None:
        _question(b, q)
    if (r := b.round()) is not None and not r.ended and not is_teacher():
        round_note(r)


def _banner(lead: dict) -> None:
    """"Following the teacher" with Leave, or, for a student who left, Follow."""
    c1, c2 = st.columns([4, 1], vertical_alignment="center")
    if st.session_state.get(NOT_FOLLOWING):
        c1.caption("The class is following the teacher; you are exploring on your own.")
        if c2.button("Follow", key="follow_again"):
            st.session_state.pop(NOT_FOLLOWING)
            st.session_state.pop(LEAD_N, None)
            st.rerun()
        return
    st.session_state[BANNER] = lead["page"]
    c1.info(f"**Following the teacher** ({lead['page'] or 'waiting for the first page'}).", icon="👣")
    if c2.button("Leave", key="follow_leave", help="Explore on your own; the teacher's moves no longer take you along."):
        st.session_state[NOT_FOLLOWING] = True
        st.rerun()


def _follow(lead: dict, title: str) -> None:
    """The teacher's move, at the class bar's poll: to the lead's page and setup (nothing drawn). A move to another
    page is made at the start of the page's next full run (``take_the_move``), never from inside the poll: a switch
    made in a fragment could leave the poll's drawing addressed into the new page (the browser's "Bad delta path",
    and a tab that stopped talking to the server). The move counts as followed once this session is on the lead's
    page: a switch whose run a loaded server merged with another rerun of the old page is tried again."""
    if not lead["page"] or st.session_state.get(LEAD_N) == lead["n"]:
        return
    if lead["page"] != title and lead["page"] in PAGES:
        st.session_state[MOVE] = (lead["page"], lead["query"])
        st.rerun(scope="app")
    st.session_state[LEAD_N] = lead["n"]
    if lead["query"] != st.query_params.to_dict():
        st.query_params.from_dict(lead["query"])
        st.rerun(scope="app")
    if st.session_state.get(BANNER) != lead["page"]:
        st.rerun(scope="app")  # the teacher came to this page: the banner says so


def take_the_move(title: str) -> None:
    """First thing in a page run: the teacher's page, when the class bar's poll found a move to it; on arrival, the
    teacher's setup into the address (before the page reads it). The switch itself leaves the address alone: a switch
    that changed the address in the browser first was, under load, now and then overtaken by a rerun of the old page
    (the address took the setup, the page stayed)."""
    if (move := st.session_state.get(MOVE)) is None:
        return
    page, query = move
    if page != title and page in PAGES:
        st.switch_page(PAGES[page])
    del st.session_state[MOVE]
    if page == title and query != _address():
        st.query_params.from_dict(query)


def _question(b: RoomBook, q: Question) -> None:
    """The open question: an answer box until the run ends, then the class's answers against the truth."""
    truth = question_truth(q)
    me = st.session_state.get(BROWSER)
    mine = b.answers(q.id).get(me) if me else None
    with st.container(border=True, key="class_question"):
        st.markdown(f"❓ **The teacher asks about {q.about}:** {q.text}")
        if truth is not None:
            said = "" if mine is None else f" You said {answer_text(q, mine)}."
            st.markdown(f"**It reached {answer_text(q, truth)}.**{said} The class's answers are on the Teacher "
                        "page's projector view.")
            return
        if is_teacher():
            st.caption(f"{len(b.answers(q.id))} answers so far.")
            return
        if not me:
            st.caption("Answering needs this browser's name (in the sidebar): a moment.")
            return
        if q.kind == "accuracy":
            value = st.slider("Your guess (% of the test digits right)", 0.0, 100.0, 90.0 if mine is None else mine,
                              0.5, key=f"answer_{q.id}")
        else:
            value = st.selectbox("Your guess (the digit)", list(range(10)), key=f"answer_{q.id}",
                                 index=None if mine is None else int(mine))
        if st.button("Answer" if mine is None else "Change my answer", key=f"answer_go_{q.id}",
                     disabled=value is None):
            try:
                mine = b.answer(q, me, value)
            except (RoomError, CollectionError) as e:
                st.error(f"Your answer was not kept: {e}")
        if mine is not None:
            st.caption(f"Your answer: {answer_text(q, mine)}. The truth shows here when the run ends.")


def answer_text(q: Question, value: float) -> str:
    return f"{value:.1f}%" if q.kind == "accuracy" else f"the digit {int(value)}"


@st.cache_resource(ttl=2, max_entries=8, show_spinner=False)
def _truth(question_id: str, kind: str, job: str) -> float | None:
    """The true answer once the run is done (None before): shared by the class, asked of the queue every 2 s."""
    snap = get_queue().snapshot(job)
    if snap is None or snap.state != "done" or not snap.model_id:
        return None
    loaded = load_model(snap.model_id)
    if loaded is None:
        return None
    _, info = loaded
    if kind == "accuracy":
        return None if info.accuracy is None else 100.0 * info.accuracy
    return _most_wrong(snap.model_id)


@st.cache_resource(max_entries=16, show_spinner=False)
def _most_wrong(model_id: str) -> float | None:
    loaded = load_model(model_id)
    a = model_analysis(*loaded, get_data(loaded[1].config.dataset)) if loaded else None
    if a is None:
        return None
    cm = a.predictions.confusion
    wrong = cm.sum(1) - cm.diagonal()
    return float(int(wrong.argmax()))


def question_truth(q: Question) -> float | None:
    return _truth(q.id, q.kind, q.job)


def class_hold() -> float:
    """Seconds left of the teacher's hold on Train (0: none)."""
    try:
        return 0.0 if (b := book()) is None else b.held_for()
    except CollectionError:
        return 0.0  # the database does not answer: nothing holds Train


def note_asked(config_key: str) -> None:
    """This browser asked for a run of this config: its model is (also) theirs, erased with their pseudonym."""
    me, b = st.session_state.get(BROWSER), book()
    if me and b is not None and config_key:
        try:
            b.asked(me, config_key)
        except CollectionError:
            pass  # the run trains all the same; only the note of whose it is was lost


def owner_name(owner: str) -> str:
    """A run's owner as the class reads it: their pseudonym, else "a student"."""
    return pseudonym_of(owner) or "a student"


__all__ = ["book", "class_bar", "class_hold", "note_asked", "owner_name", "pseudonym", "question_truth"]
