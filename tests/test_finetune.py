"""Teach it our handwriting: fine-tuning a stored model on a class's drawings, before and after."""

import pytest
import torch

from digitlab.finetune import NotEnoughDrawings, fine_tune, missing_drawings, record_extra, split
from digitlab.store import ModelStore


def _class_hand(mnist, n=200):
    """A class whose digits sit low and to the right, in thick strokes: real MNIST test digits, moved and thickened."""
    images, labels = mnist.test_images[5000 : 5000 + n], mnist.test_labels[5000 : 5000 + n]
    moved = torch.roll(images, shifts=(2, 3), dims=(1, 2))
    return torch.maximum(moved, torch.roll(moved, 1, 2)), labels.clone(), [f"drawing{i:03d}" for i in range(n)]


def test_fine_tuning_learns_the_class_hand_and_shows_what_mnist_lost(mnist, trained):
    model, info = ModelStore().load(trained["mlp"].id)
    images, labels, ids = _class_hand(mnist)
    before_rng = torch.random.get_rng_state()
    result = fine_tune(model, info.config, images, labels, ids, mnist)
    assert torch.equal(torch.random.get_rng_state(), before_rng)
    assert result.after["class drawings"] > result.before["class drawings"] + 0.3  # it learned the class's hand
    assert result.before["MNIST test"] == pytest.approx(info.metrics["test_accuracy"], abs=1e-4)
    assert 0.5 < result.after["MNIST test"] <= result.before["MNIST test"] + 0.01  # forgetting shown, not hidden
    assert set(result.held_out).isdisjoint(result.trained_on) and len(result.held_out) + len(result.trained_on) == 200
    held_labels = {int(labels[ids.index(i)]) for i in result.held_out}
    assert held_labels == set(range(10))  # every digit is checked on at least one drawing it never saw
    assert result.losses[-1] < result.losses[0]
    # the stored parent is untouched
    again, _ = ModelStore().load(trained["mlp"].id)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))
    extra = record_extra(info.id, result)
    assert extra["fine_tuned_from"] == info.id and extra["fine_tuned_on"] == result.trained_on


def test_too_few_drawings_says_how_many_more_each_digit_needs(mnist, trained):
    model, info = ModelStore().load(trained["mlp"].id)
    images, labels, ids = _class_hand(mnist, 40)
    keep = labels != 4
    keep[(labels == 4).nonzero()[0]] = True  # one 4 only
    few = labels[keep]
    assert missing_drawings(few)[4] == 1
    with pytest.raises(NotEnoughDrawings, match="Still needed: 1 more 4"):
        fine_tune(model, info.config, images[keep], few, [i for i, k in zip(ids, keep) if k], mnist)
    linear, linfo = ModelStore().load(trained["linear"].id)
    with pytest.raises(ValueError, match="needs a ten-digit model"):
        fine_tune(linear, linfo.config, images, labels, ids, mnist)


def test_the_split_keeps_at_least_one_of_each_digit_on_both_sides():
    labels = torch.tensor([d for d in range(10) for _ in range(2 + d)])
    train, held = split(labels)
    assert set(labels[train].tolist()) == set(labels[held].tolist()) == set(range(10))
    assert len(set(train.tolist()) & set(held.tolist())) == 0 and len(train) + len(held) == len(labels)


def test_drawings_travel_to_the_worker_intact_and_a_malformed_payload_is_refused():
    import torch

    from digitlab.finetune import pack, unpack

    images = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    back = unpack(pack(images, torch.tensor([1, 7, 9]), ["a", "b", "c"]))
    assert torch.equal(back[0], images) and back[1].tolist() == [1, 7, 9] and back[2] == ["a", "b", "c"]
    for bad in ({**pack(images, torch.tensor([1, 7, 9]), ["a", "b", "c"]), "labels": [1, 7]},
                {**pack(images, torch.tensor([1, 7, 9]), ["a", "b", "c"]), "labels": [1, 7, 12]},
                {"images": "not base64!", "labels": [], "ids": []}):
        try:
            unpack(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad['labels']}")
