"""A setup shared by link: every stage's settings survive the round trip; bad values are left out with a note."""

import pytest

from digitlab.links import from_params, to_params
from digitlab.models import PRESETS


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_and_a_changed_one_survive_the_round_trip(name):
    config = PRESETS[name]
    assert from_params(to_params(config), config).config == config
    changed = config.with_(lr=config.lr * 3, batch_size=96, epochs=7, train_limit=5000)
    if config.kind == "mlp":
        changed = changed.with_(hidden=(200, 100, 50), activations=("tanh", "relu", "relu"))
    back = from_params(to_params(changed, image=17), PRESETS[name])
    assert back.config == changed and back.notes == [] and back.extra == {"image": "17"}


def test_bad_values_are_left_out_one_by_one_with_a_note():
    default = PRESETS["mlp-128-64"]
    setup = from_params({"preset": "mlp-128-64", "lr": "fast", "batch": "12.5", "epochs": "1000", "hidden": "128-x",
                         "act": "relu-swish", "optimizer": "lion", "norm": "mnist", "colour": "red"}, default)
    assert setup.config == default  # everything bad left out, norm=mnist is the preset's own
    notes = "\n".join(setup.notes)
    for expected in ("lr='fast' left out: not a number", "batch='12.5' left out: not a whole number",
                     "epochs='1000' left out: epochs is 1,000, outside 1..100", "hidden='128-x' left out",
                     "act='relu-swish' left out",
                     "optimizer='lion' left out: unknown optimizer 'lion': pick one of sgd, momentum, adam",
                     "colour='red' left out: not a setting this page knows"):
        assert expected in notes
    assert len(setup.notes) == 7


def test_a_preset_of_another_page_and_settings_that_clash_fall_back_to_the_page_default():
    cnn = PRESETS["cnn-fast"]
    setup = from_params({"preset": "mlp-128-64", "hidden": "10"}, cnn)
    assert setup.config == cnn
    assert any("not a cnn preset on this page" in n for n in setup.notes)
    assert any("no hidden layers to set" in n for n in setup.notes)
    clash = from_params({"preset": "linear-seed", "optimizer": "adam"}, PRESETS["linear-seed"])  # by hand: SGD only
    assert clash.config == PRESETS["linear-seed"] and "do not go together" in clash.notes[0]


def test_a_viewing_pages_choices_are_checked_one_by_one():
    from digitlab.links import view_from_params, view_params

    looks = ("Confusion matrix", "Per-class scores")
    params = view_params(models=["a", "b", "c", "d", "e"], look="Per-class scores")
    view = view_from_params(params | {"image": "3"}, {"a", "b", "c", "d", "e"}, looks)
    assert (view.models, view.side_by_side, view.look, view.image) == (["a", "b", "c", "d"], True, "Per-class scores",
                                                                      None)
    assert view.notes == ["models: only the first 4 shown side by side",
                          "image='3' left out: not a setting this page knows"]  # this page picks no test image
    one = view_from_params({"model": "b", "models": "a,b"}, {"a", "b"}, looks, n_images=10, most=0)
    assert one.models == ["b"] and not one.side_by_side and one.notes == [
        "models='a,b' left out: not a setting this page knows"]
    for odd in ("²", "٣", "-1", "12"):  # a superscript two is a digit to Python, but no number int() reads
        crafted = view_from_params({"image": odd}, set(), looks, n_images=10)
        assert crafted.image == (3 if odd == "٣" else None)
        assert crafted.image is not None or crafted.notes == [f"image={odd!r} left out: a test image is a number "
                                                              "from 0 to 9"]


def test_a_preset_named_on_fashion_mnist_takes_fashions_recipe():
    """A Fashion-MNIST link that names cnn-best and changes only the epochs gets Fashion's recipe (its network and
    augmentation), not MNIST's."""
    from digitlab.models import preset_for

    setup = from_params({"preset": "cnn-best", "epochs": "3"}, preset_for("cnn-seed", "fashion"))
    assert setup.config == preset_for("cnn-best", "fashion").with_(epochs=3) and setup.notes == []
    assert setup.config.arch != PRESETS["cnn-best"].arch
