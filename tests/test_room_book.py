"""The class's book: pseudonyms, what each asked for, the teacher's lead, questions and answers, the round, and
erasing one pseudonym, on the real SQLite database the collection uses."""

import numpy as np
import pytest

from digitlab.collection import Collection
from digitlab.room_book import ADJECTIVES, ANIMALS, RoomError, browser_key


def token(n: int) -> str:
    return f"{n:032x}"


@pytest.fixture
def coll(tmp_path):
    return Collection(tmp_path / "collection")


def test_a_browser_is_known_by_a_hash_of_its_token_and_nothing_else_is_accepted():
    key = browser_key(token(1))
    assert len(key) == 16 and token(1) not in key and key == browser_key(token(1))
    for bad in ("", "0" * 31, "G" * 32, "0" * 33, None, 7, ["0" * 32], "0" * 32 + "\n"):
        with pytest.raises(RoomError):
            browser_key(bad)


def test_pseudonyms_are_an_adjective_and_an_animal_unique_in_the_class_and_kept(coll):
    book = coll.book
    keys = [browser_key(token(n)) for n in range(80)]
    names = [book.pseudonym(k) for k in keys]
    assert len(set(names)) == 80  # sixty and more browsers: no two alike
    for name in names:
        adjective, animal = name.split(" ")
        assert adjective in ADJECTIVES and animal in ANIMALS
    assert [book.pseudonym(k) for k in keys] == names  # the same browser again: the same name
    assert Collection(coll.root).book.names()[keys[0]] == names[0]  # read back from the database


def test_a_pseudonym_changes_only_to_a_free_pair_from_the_lists(coll):
    book = coll.book
    a, b = browser_key(token(1)), browser_key(token(2))
    taken = book.pseudonym(b)
    assert book.rename(a, "Quiet", "Owl") == "Quiet Owl" == book.pseudonym(a)
    with pytest.raises(RoomError, match="taken"):
        book.rename(a, *taken.split(" "))
    with pytest.raises(RoomError, match="listed"):
        book.rename(a, "Ada", "Lovelace")  # never a real name
    assert book.pseudonym(a) == "Quiet Owl"


def test_erasing_a_pseudonym_leaves_nothing_of_it(coll):
    book = coll.book
    me, other = browser_key(token(1)), browser_key(token(2))
    book.pseudonym(me), book.pseudonym(other)
    digit = np.zeros((28, 28), np.uint8)
    digit[5:20, 12:16] = 255
    mine = coll.add(digit, 1, saved_by=me)
    theirs = coll.add(digit, 1, saved_by=other)
    book.asked(me, "only-mine"), book.asked(me, "shared"), book.asked(other, "shared")
    q = book.ask("accuracy", "job-1", "a CNN")
    book.answer(q, me, 97.5), book.answer(q, other, 90)
    r = book.start_round("cnn-model")
    book.round_drawing(r, mine.id, me, 1, 7, 0.9)
    book.round_drawing(r, theirs.id, other, 1, 1, 0.99)
    version = coll.version()

    removed, models_to_remove = book.erase(me)
    assert removed == {"drawings": 1, "answers": 1, "round drawings": 1, "runs asked for": 2, "pseudonym": 1}
    assert models_to_remove == {"only-mine"}  # the shared run's model is the other student's too
    assert book.holdings(me) == {"drawings": 0, "answers": 0, "runs asked for": 0, "round drawings": 0}
    assert me not in book.names() and me not in book.answers(q.id)
    assert [e.id for e in coll.list()] == [theirs.id] and coll.version() != version
    assert [d.drawing for d in book.round_drawings(r.id)] == [theirs.id]
    assert book.holdings(other) == {"drawings": 1, "answers": 1, "runs asked for": 1, "round drawings": 1}


def test_answers_are_checked_and_one_per_browser(coll):
    book = coll.book
    me = browser_key(token(1))
    acc, digit = book.ask("accuracy", "j", "run"), book.ask("digit", "j", "run")
    assert book.question() == digit  # the newest question is the open one
    for bad in (-1, 100.5, float("nan"), float("inf"), "97", True, None):
        with pytest.raises(RoomError):
            book.answer(acc, me, bad)
    for bad in (3.5, 10, -1):
        with pytest.raises(RoomError):
            book.answer(digit, me, bad)
    book.answer(acc, me, 80), book.answer(acc, me, 95)
    assert book.answers(acc.id) == {me: 95.0}
    with pytest.raises(RoomError):
        book.ask("favourite colour", "j", "run")


def test_the_lead_counts_each_move_and_holds_train_for_a_while(coll):
    book = coll.book
    assert book.lead()["on"] is False and book.held_for() == 0
    n0 = book.lead()["n"]
    book.set_lead(on=True, page="MLP", query={"preset": "mlp-fastai"})
    book.set_lead(page="MLP", query={"preset": "mlp-fastai"})  # the same place again: not a move
    assert book.lead()["n"] == n0 + 1
    book.set_lead(page="CNN", query={})
    lead = Collection(coll.root).book.lead()
    assert (lead["on"], lead["page"], lead["n"]) == (True, "CNN", n0 + 2)
    book.set_lead(hold_s=60)
    assert 55 < book.held_for() <= 60
    book.set_lead(hold_s=0)
    assert book.held_for() == 0


def test_names_never_run_out_and_a_new_browser_tries_a_bounded_number(coll, monkeypatch):
    from digitlab import room_book

    monkeypatch.setattr(room_book, "ADJECTIVES", ("Calm", "Keen"))
    monkeypatch.setattr(room_book, "ANIMALS", ("Owl", "Fox"))  # four pairs for thirty browsers
    book = coll.book
    tries = []
    real = book.db.transaction

    def counted():
        tries.append(1)
        return real()

    monkeypatch.setattr(book.db, "transaction", counted)
    names = [book.pseudonym(browser_key(token(n))) for n in range(30)]
    assert len(set(names)) == 30
    assert {" ".join(name.split(" ")[:2]) for name in names} == {"Calm Owl", "Calm Fox", "Keen Owl", "Keen Fox"}
    assert len(tries) <= 30 * (1 + 2 * room_book.TRIES)
