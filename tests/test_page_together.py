"""The class together under the real Streamlit runtime: a pseudonym per browser (kept by a token in the browser's
storage, here handed over as the component would), follow me, Train held, a question before a run and its
answers against the truth, the fool-the-model round's gallery, erasing a pseudonym, and each student's own
handwriting. The browsers themselves (the storage, the pad) are driven in test_browser_together.py."""

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
KEY = "a long teacher key for the tests"


def token(n: int) -> str:
    return f"{n:032x}"


@pytest.fixture()
def room(tmp_path, monkeypatch, trained):
    """The session's trained models in a store of this test's own, an empty collection, the teacher key set."""
    from pagetools import copy_trained

    from digitlab import ui
    from digitlab.collection import Collection

    own = tmp_path / "models"
    copy_trained(trained, own)
    monkeypatch.setenv("DIGITLAB_MODEL_DIR", str(own))
    monkeypatch.setenv("DIGITLAB_COLLECTION_DIR", str(tmp_path / "col"))
    monkeypatch.setenv("DIGITLAB_TEACHER_KEY", KEY)
    ui.get_store.clear()
    yield Collection()
    ui.get_queue().close()
    monkeypatch.undo()
    ui.get_store.clear()


def browser(n: int | None, page: str = "", **state) -> AppTest:
    """A browser's session on ``page`` (app.py's navigation, as `streamlit run app.py` serves it); ``n``: the token
    its storage holds (None: it never said)."""
    at = AppTest.from_file(APP, default_timeout=120)
    if n is not None:
        at.session_state["browser_token"] = token(n)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def teacher(page: str = "pages/8_Teacher.py") -> AppTest:
    return browser(999, page, teacher_unlocked=True)


def you_are(at: AppTest) -> str:
    labels = [b.label for b in at.sidebar.button if b.key == "name_open"]
    return next((label.split("**")[1] for label in labels if "You are" in label), "")


def test_each_browser_has_a_pseudonym_kept_across_reloads_and_changeable(room):
    from digitlab.room_book import ADJECTIVES, ANIMALS, browser_key

    first = browser(1)
    name = you_are(first)
    adjective, animal = name.split(" ")
    assert adjective in ADJECTIVES and animal in ANIMALS
    assert you_are(browser(1, "pages/3_MLP.py")) == name  # a reload, another page: the same browser, the same name
    assert you_are(browser(2)) not in ("", name)
    assert you_are(browser(None)) == ""  # a browser that never said its token: no name made up for it
    assert you_are(browser(None, browser_token="../../etc/passwd")) == ""  # a forged token is no token
    # changed from the dialog's two lists (never free text)
    first.button(key="name_open").click().run()
    first.selectbox(key="name_adj").set_value("Quiet")
    first.selectbox(key="name_animal").set_value("Owl")
    first.button(key="name_use").click().run()
    assert you_are(first) == "Quiet Owl" == room.book.names()[browser_key(token(1))]
    taken = you_are(browser(2)).split(" ")
    first.button(key="name_open").click().run()
    first.selectbox(key="name_adj").set_value(taken[0])
    first.selectbox(key="name_animal").set_value(taken[1])
    first.button(key="name_use").click().run()
    assert any("taken by someone else" in e.value for e in first.error) and you_are(first) == "Quiet Owl"


def test_a_students_run_carries_their_pseudonym_to_the_teachers_page(room):
    from digitlab import ui
    from digitlab.room_book import browser_key

    student = browser(3, "pages/3_MLP.py")
    name = you_are(student)
    student.number_input(key="mlp_simple_net_epochs").set_value(10).run()
    student.button(key="mlp_train").click().run()
    job = student.session_state["mlp_job"]
    snap = ui.get_queue().snapshot(job)
    assert snap.owner == browser_key(token(3))  # the run is the browser's, not the session's
    t = teacher()
    runs = [m.value for m in t.markdown if snap.config.title in m.value]
    assert any(f"started by {name}" in r for r in runs), runs  # ten epochs: still waiting or running
    assert snap.config.key() in room.book.asked_by()
    ui.get_queue().cancel(job)


def test_follow_me_takes_the_student_to_the_teachers_page_and_setup_and_leave_lets_them_go(room):
    t = teacher()
    t.toggle(key="lead_on").set_value(True).run()
    assert room.book.lead()["on"]
    t.switch_page("pages/4_CNN.py").run()
    t.selectbox(key="cnn_preset").set_value("cnn-seed").run()
    t.run()  # the setup reaches the address, then the lead
    lead = room.book.lead()
    assert lead["page"] == "CNN" and lead["query"].get("preset") == "cnn-seed"
    # the lead is the teacher's address as it stands (the class bar's poll publishes that address: had the two differed,
    # as when the frame took dataset=mnist out of the address and the setup put it back, every teacher run was a move)
    assert lead["query"] == {k: v for k, v in t.query_params.items() if k != "present"}
    t.run()
    assert room.book.lead()["n"] == lead["n"]  # a rerun on the same page and setup moves nobody
    student = browser(4)  # on Home
    student.run()
    assert [x.value for x in student.title] == ["🧩 CNN"]
    assert any("Following the teacher" in i.value for i in student.info)
    assert student.selectbox(key="cnn_preset").value == "cnn-seed"  # the teacher's setup, not the page's default
    student.button(key="follow_leave").click().run()
    t.switch_page("pages/3_MLP.py").run()
    student.run()
    assert [x.value for x in student.title] == ["🧩 CNN"]  # left: the teacher's moves no longer take them along
    assert not any("Following the teacher" in i.value for i in student.info)


def test_the_teacher_holds_train_and_a_click_from_a_page_drawn_before_is_refused(room):
    from digitlab import ui

    student = browser(5, "pages/3_MLP.py")  # drawn before the hold: its Train button still open on the screen
    t = teacher()
    t.button(key="lead_hold").click().run()
    assert 50 < room.book.held_for() <= 60
    before = len(ui.get_queue().jobs())
    student.button(key="mlp_train").click().run()
    assert "mlp_job" not in student.session_state and len(ui.get_queue().jobs()) == before
    assert student.button(key="mlp_train").disabled  # and from then on it is closed
    assert any("holds the class's Train buttons" in c.value for c in student.caption)
    t.button(key="lead_release").click().run()
    assert room.book.held_for() == 0
    student.run()
    assert not student.button(key="mlp_train").disabled


def test_predict_then_see_draws_the_class_answers_against_the_truth(room, trained, mnist):
    import json

    from digitlab import ui

    cnn = trained["cnn"]
    snap = ui.get_queue().submit(cnn.config, mnist, "")  # the class's run, answered from the store: done at once
    assert snap.finished and snap.model_id == cnn.id
    room.book.ask("accuracy", snap.id, cnn.config.title)
    students = [browser(10 + n, "pages/1_Data_Explorer.py") for n in range(3)]
    for s in students:
        # the truth is known: the students see it, and their answer, instead of the box
        assert any("It reached" in m.value for m in s.markdown)
    room.book.close_question()
    running = ui.get_queue().submit(cnn.config.with_(epochs=2, train_limit=3000), mnist, "", fresh=True)
    question = room.book.ask("accuracy", running.id, "a CNN")
    for n, s in enumerate(students):
        s.run()
        s.slider(key=f"answer_{question.id}").set_value(90.0 + 2 * n)
        s.button(key=f"answer_go_{question.id}").click().run()
        assert any("Your answer: " in c.value for c in s.caption)
    assert sorted(room.book.answers(question.id).values()) == [90.0, 92.0, 94.0]
    done = ui.get_queue().wait(running.id, timeout=600)
    t = teacher()
    truth = 100 * ui.get_store().info(done.model_id).accuracy
    assert any(f"the truth: {truth:.1f}%" in m.value for m in t.markdown)
    charts = [json.loads(c.proto.spec) for c in t.get("plotly_chart")]
    answers = next(c for c in charts if c["data"] and c["data"][0].get("type") == "histogram")
    assert sorted(answers["data"][0]["x"]) == [90.0, 92.0, 94.0]
    assert any(s.get("x0") == pytest.approx(truth) for s in answers["layout"]["shapes"])


def test_the_fool_the_model_round_fills_the_gallery_with_the_drawings_that_fooled_it(room, trained, mnist):
    from digitlab.room_book import browser_key

    t = teacher()
    t.button(key="fool_start").click().run()
    r = room.book.round()
    assert r is not None and r.model_id == trained["cnn"].id and not r.ended
    student = browser(20, "pages/1_Data_Explorer.py")
    assert any("Fool the model!" in i.value for i in student.info)
    me = browser_key(token(20))
    for n in range(4):  # as the Sketch Pad's Save keeps them (driven in the browser test)
        image = mnist.test_images[n].numpy()
        entry = room.add(image, int(mnist.test_labels[n]), saved_by=me)
        room.book.round_drawing(r, entry.id, me, entry.label, (entry.label + 1) % 10 if n < 3 else entry.label, 0.9)
    t.run()
    metrics = {m.label: m.value for m in t.metric}
    assert metrics["Drawings this round"] == "4" and metrics["Fooled the model"] == "3"
    assert metrics["Students who fooled it"] == "1"
    gallery = [g for g in t.get("image") if len(g.proto.imgs) > 1]
    assert gallery and len(gallery[0].proto.imgs) == 3
    assert all(you_are(student) in i.caption for i in gallery[0].proto.imgs)
    t.button(key="fool_end").click().run()
    assert room.book.round().ended
    # a new round from the ended one: one click (the start button was drawn for one run only, and its click lost)
    assert t.button(key="fool_start").label == "Start a new round"
    t.button(key="fool_start").click().run()
    again = room.book.round()
    assert again.id != r.id and not again.ended


def test_erasing_a_pseudonym_leaves_nothing_of_it(room, mnist):
    from digitlab import ui
    from digitlab.room_book import browser_key

    student = browser(30, "pages/3_MLP.py")
    name, me = you_are(student), browser_key(token(30))
    student.number_input(key="mlp_simple_net_epochs").set_value(1)
    student.number_input(key="mlp_simple_net_limit").set_value(2000).run()
    student.button(key="mlp_train").click().run()
    done = ui.get_queue().wait(student.session_state["mlp_job"], timeout=600)
    assert done.state == "done"
    room.add(mnist.test_images[0].numpy(), int(mnist.test_labels[0]), saved_by=me)
    other = browser(31)
    room.add(mnist.test_images[1].numpy(), int(mnist.test_labels[1]), saved_by=browser_key(token(31)))
    q = room.book.ask("digit", done.id, "a run")
    room.book.answer(q, me, 8)
    t = teacher()
    t.selectbox(key="names_pick").set_value(name).run()
    assert any(f"**{name}** holds 1 drawings, 1 answers, 1 runs asked for" in m.value for m in t.markdown)
    t.checkbox(key=f"names_sure_{me}").check().run()
    t.button(key="names_erase").click().run()
    assert any(f"Erased {name}" in s.value and "1 model(s)" in s.value for s in t.success)
    assert me not in room.book.names() and room.book.answers(q.id) == {}
    assert all(e.saved_by != me for e in room.list()) and len(room.list()) == 1
    assert done.model_id not in {i.id for i in ui.get_store().list()}
    assert you_are(other)  # the other student keeps their name and drawing


def test_my_handwriting_scores_only_my_drawings_digit_by_digit(room, trained, mnist):
    from digitlab.room_book import browser_key

    me, other = browser_key(token(40)), browser_key(token(41))
    for n in range(6):
        room.add(mnist.test_images[n].numpy(), int(mnist.test_labels[n]), saved_by=me)
    room.add(np.zeros((28, 28), np.uint8), 1, saved_by=other)
    at = browser(40, "pages/9_Our_Handwriting.py")
    table = next(d.value for d in at.dataframe if "my drawings" in d.value.columns)
    labels = [int(v) for v in mnist.test_labels[:6]]
    assert table["my drawings"].sum() == 6 and sorted(table["digit"]) == sorted(set(labels))
    assert any(m.label.startswith("Read right by the MNIST model") for m in at.metric)
    assert len(at.get("image")[-1].proto.imgs) == 6
    assert "5. My handwriting" in [h.value for h in at.header]
    nobody = browser(42, "pages/9_Our_Handwriting.py")
    assert any("You have not saved a drawing yet" in i.value for i in nobody.info)


def test_the_room_counts_a_browser_once_by_its_key_not_twice_while_it_says_it(room):
    from digitlab.ui.room import _presence

    before = _presence().counts().get("MLP", 0)
    at = AppTest.from_file(APP, default_timeout=120).run()  # the first moment: the token not handed over yet
    at.switch_page("pages/3_MLP.py").run()
    assert _presence().counts().get("MLP", 0) == before + 1
    at.session_state["browser_token"] = token(50)  # ... now the component has said it
    at.run()
    assert _presence().counts().get("MLP", 0) == before + 1  # the same browser, counted once
    other_tab = browser(50, "pages/3_MLP.py")  # a second tab of that browser
    assert _presence().counts().get("MLP", 0) == before + 1
    assert not other_tab.exception


def test_a_database_that_stops_answering_leaves_every_page_working(room, monkeypatch):
    """The class's book lives in the collection's database (PostgreSQL on a school server): while it does not answer,
    a student's page draws without the class bar and without a traceback, and the Teacher page says why in a line."""
    from digitlab.collection import CollectionError
    from digitlab.drawings_db import Drawings

    student = browser(60, "pages/3_MLP.py")
    teacher_page = teacher()

    def down(self):
        raise CollectionError("the collection's database stopped answering (postgresql://…@db:5432/class)")

    monkeypatch.setattr(Drawings, "transaction", down)
    room.book._forget()  # what the process had read is older than its cache now
    student.run()
    assert not student.exception and [t.value for t in student.title] == ["🧠 MLP"]
    assert student.button(key="mlp_train") and not student.button(key="mlp_train").disabled
    teacher_page.run()
    assert not teacher_page.exception
    assert any("does not answer now" in e.value for e in teacher_page.error)


def test_a_teacher_who_reloads_while_the_class_follows_reaches_the_key_box(room):
    """Follow me on, the teacher's tab reloaded (a new session, not unlocked yet): the Teacher page stays, so the
    key can be typed; it was taken to the lead's page like any student's."""
    room.book.set_lead(on=True, page="MLP", query={})
    at = browser(70, "pages/8_Teacher.py")
    at.run()
    assert [t.value for t in at.title] == ["🎓 Teacher"] and at.text_input(key="teacher_key_input")
