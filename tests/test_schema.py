"""One schema for a config's fields (config.FIELDS): check_config, a shared link, the command line, the training
widgets and the store all read it, so a bound is the same everywhere and a value just past it is refused with the
same message; the store still reads the records it accepted before, under the wider ranges it had then."""

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from digitlab.cli import build_parser
from digitlab.config import FIELDS, ConfigError, check_config
from digitlab.links import PARAMS, from_params
from digitlab.models import PRESETS
from digitlab.store import ModelStore

MLP_PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "3_MLP.py")
BASE = PRESETS["simple_net"]
# (config field, link parameter, command-line flag)
NUMBERS = [("lr", "lr", "--lr"), ("epochs", "epochs", "--epochs"), ("batch_size", "batch", "--batch-size"),
           ("train_limit", "limit", "--train-limit"), ("seed", None, "--seed")]


def just_past(name: str) -> list:
    f = FIELDS[name]
    if f.kind == "int":
        return [int(f.lo) - 1, int(f.hi) + 1]
    return [f.lo / 2, f.hi * 1.000001]


def cli_refusal(capsys, flag: str, text: str) -> str:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "mlp", flag, text])
    return capsys.readouterr().err


@pytest.mark.parametrize("name,param,flag", NUMBERS)
def test_a_value_just_past_a_bound_is_refused_with_the_same_message_by_every_reader(name, param, flag, capsys):
    field = FIELDS[name]
    for value in just_past(name):
        said = field.problem(value)
        assert said is not None and "outside" in said
        with pytest.raises(ConfigError) as refused:
            check_config(BASE.with_(**{name: value}))
        assert said[0].upper() + said[1:] in str(refused.value)
        if param:
            setup = from_params({param: str(value)}, BASE)
            assert setup.config == BASE and setup.notes == [f"{param}={str(value)!r} left out: {said}"]
        assert f"argument {flag}: {said}" in cli_refusal(capsys, flag, str(value))
    for value in (field.lo, field.hi):  # the bounds themselves are allowed, by all of them alike
        value = int(value) if field.kind == "int" else value
        check_config(BASE.with_(**{name: value}))
        if param:
            assert from_params({param: str(value)}, BASE).config == BASE.with_(**{name: value})
        assert getattr(build_parser().parse_args(["train", "mlp", flag, str(value)]), name) == value


def test_a_choice_comes_from_the_schema_for_check_config_links_and_the_command_line(capsys):
    said = FIELDS["optimizer"].problem("lion")
    assert said == "unknown optimizer 'lion': pick one of sgd, momentum, adam"
    with pytest.raises(ConfigError, match=f"^U{said[1:]}"):
        check_config(BASE.with_(optimizer="lion"))
    assert from_params({"optimizer": "lion"}, BASE).notes == [f"optimizer='lion' left out: {said}"]
    for value in FIELDS["optimizer"].choices:
        assert from_params({"optimizer": value}, BASE.with_(form="nn")).config.optimizer == value
    # the command line offers the schema's choices: kinds and datasets
    for kind in FIELDS["kind"].choices:
        assert build_parser().parse_args(["train", kind]).kind == kind
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "ridge"])
    assert "invalid choice: 'ridge'" in capsys.readouterr().err
    assert "invalid choice: 'kmnist'" in cli_refusal(capsys, "--dataset", "kmnist")
    assert build_parser().parse_args(["train", "mlp", "--dataset", "fashion"]).dataset == "fashion"
    assert set(PARAMS.values()) <= set(FIELDS)  # every link parameter names a field of the schema


def test_the_mlp_pages_widgets_take_their_bounds_and_options_from_the_schema(mnist):
    at = AppTest.from_file(MLP_PAGE, default_timeout=120).run()
    assert not at.exception
    optimizer = FIELDS["optimizer"]
    assert at.selectbox(key="mlp_simple_net_opt").options == [optimizer.labels[c] for c in optimizer.choices]
    assert len(at.selectbox(key="mlp_simple_net_norm").options) == len(FIELDS["norm"].choices)
    for key, name in (("mlp_simple_net_bs", "batch_size"), ("mlp_simple_net_limit", "train_limit")):
        at.number_input(key=key).set_value(int(FIELDS[name].hi)).run()
        assert not at.exception and at.number_input(key=key).value == FIELDS[name].hi
        at.number_input(key=key).set_value(int(FIELDS[name].hi) + 1).run()
        assert at.number_input(key=key).value != FIELDS[name].hi + 1  # past its maximum the box takes nothing
    # a link past a bound opens the page without it, saying why in the schema's words
    at = AppTest.from_file(MLP_PAGE, default_timeout=120)
    at.query_params["batch"] = "60001"
    at.run()
    said = FIELDS["batch_size"].problem(60_001)
    assert any(f"batch='60001' left out: {said}" in w.value for w in at.warning)


def _copy(src: ModelStore, dst: ModelStore, model_id: str, new_id: str, **config) -> None:
    record = json.loads((src.root / f"{model_id}.json").read_text())
    record["id"], record["config"] = new_id, {**record["config"], **config}
    shutil.copy(src.root / f"{model_id}.safetensors", dst.root / f"{new_id}.safetensors")
    (dst.root / f"{new_id}.json").write_text(json.dumps(record))


def test_the_store_still_reads_records_legal_when_written_and_refuses_what_never_was(trained, tmp_path):
    """Records from before the schema: 500 epochs ("one more epoch" again and again), lr 100 and batch 80,000 from the
    command line, all refused for a new run now, still load; past the store's own old ranges they never could."""
    good = trained["mlp"]
    store = ModelStore(tmp_path / "models")
    store.root.mkdir(parents=True)
    old = {"epochs": 500, "lr": 100.0, "batch_size": 80_000, "train_limit": 100_000, "seed": -5,
           "weight_decay": 5.0, "label_smoothing": 0.9, "momentum": 1.0}
    _copy(ModelStore(), store, good.id, "written-before", **old)
    never = {"epochs": 1001, "lr": 5000.0, "batch_size": 100_001}
    for name, value in never.items():
        _copy(ModelStore(), store, good.id, f"never-{name}", **{name: value})
    infos, problems = store.scan()
    assert [i.id for i in infos] == ["written-before"]
    config = store.info("written-before").config
    assert {k: getattr(config, k) for k in old} == old
    model, _ = store.load("written-before")  # and its weights load
    with pytest.raises(ConfigError, match="outside"):
        check_config(config)  # but a new run of it is refused
    reasons = {p.name: p.reason for p in problems}
    for name, value in never.items():
        said = FIELDS[name].check(stored=True)
        with pytest.raises(ValueError) as e:
            said(value)
        assert f"config.{name} {e.value}" in reasons[f"never-{name}"]
