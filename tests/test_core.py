"""The training core on real MNIST subsets: models, fit, the job queue and the model store."""

import json
import math
import os
import re
import threading
from pathlib import Path

import pytest
import torch
from pagetools import WAIT_S

from digitlab import train
from digitlab.models import PRESETS, DigitCNN, Linear1, SimpleNetScratch, build_model, layer_table, simple_net
from digitlab.runs.queue import JobQueue
from digitlab.store import StoreError
from digitlab.train import (
    ConfigError,
    TrainingDiverged,
    check_config,
    compute_dtype,
    fit,
    mnist_loss,
    native_bf16,
    predict_proba,
    prepare,
    task_data,
)

SMALL = {"train_limit": 2000, "epochs": 1}
# A deep ReLU net with momentum at lr 10: its numbers overflow within a few batches.
BLOWS_UP = PRESETS["simple_net"].with_(hidden=(256, 256, 256), activations=("relu",), optimizer="momentum",
                                       lr=10.0, **SMALL)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds_and_gives_one_answer_per_image(mnist, name):
    config = PRESETS[name]
    model = build_model(config)
    x = prepare(mnist.test_images[:5], config)
    assert model(x).shape == (5, config.n_outputs)


def test_digitcnn_shapes_follow_the_seed():
    rows = layer_table(DigitCNN())
    shapes = [r["output shape"] for r in rows]
    assert "32x26x26" in shapes and "64x5x5" in shapes and shapes[-1] == "10"
    assert sum(r["parameters"] for r in rows) == sum(p.numel() for p in DigitCNN().parameters())


def test_pool_first_cnn_pools_before_batchnorm_and_keeps_the_seed_shapes():
    rows = layer_table(DigitCNN(batch_norm=True, pool_first=True))
    types = [r["type"] for r in rows]
    assert types[:4] == ["Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"]
    assert [r["output shape"] for r in rows][:2] == ["32x26x26", "32x13x13"]
    assert "64x5x5" in [r["output shape"] for r in rows]


def test_precision_setting(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setenv("DIGITLAB_PRECISION", "fp32")
    assert compute_dtype(PRESETS["cnn-fast"], cpu) == torch.float32
    monkeypatch.setenv("DIGITLAB_PRECISION", "bf16")
    assert compute_dtype(PRESETS["cnn-fast"], cpu) == torch.bfloat16
    assert compute_dtype(PRESETS["mlp-128-64"], cpu) == torch.bfloat16  # under autocast, when asked for
    assert compute_dtype(PRESETS["linear-better"], cpu) == torch.float32  # the lesson's own arithmetic
    assert compute_dtype(PRESETS["simple_net"].with_(form="scratch"), cpu) == torch.float32
    monkeypatch.setenv("DIGITLAB_PRECISION", "auto")
    assert compute_dtype(PRESETS["mlp-128-64"], cpu) == torch.float32  # autocast costs an MLP more than it saves
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    assert native_bf16() == bool(re.search(r"\b(amx_bf16|avx512_bf16)\b", cpuinfo))
    assert compute_dtype(PRESETS["cnn-seed"], cpu) == (torch.bfloat16 if native_bf16() else torch.float32)
    monkeypatch.setenv("DIGITLAB_PRECISION", "half")
    with pytest.raises(ConfigError, match="DIGITLAB_PRECISION must be one of auto, fp32, bf16"):
        compute_dtype(PRESETS["cnn-fast"], cpu)


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_cnn_trains_in_either_precision_and_comes_back_an_ordinary_model(mnist, store, monkeypatch, precision):
    monkeypatch.setenv("DIGITLAB_PRECISION", precision)
    config = PRESETS["cnn-fast"].with_(train_limit=3000)
    model = build_model(config)
    last = [e for e in fit(model, config, mnist) if e.kind == "epoch"][-1]
    assert last.test_accuracy > 0.9
    # trained channels-last; handed back contiguous, float32, and storable
    assert all(p.is_contiguous() and p.dtype == torch.float32 for p in model.parameters())
    info = store.save(model, config, metrics={"test_accuracy": last.test_accuracy}, history=[],
                      fingerprint=mnist.fingerprint(), train_seconds=last.elapsed)
    loaded, _ = store.load(info.id)
    x = mnist.test_images[:50]
    assert torch.allclose(predict_proba(model, config, x), predict_proba(loaded, config, x), atol=1e-6)


def test_loss_falls_on_a_fixed_batch(mnist):
    config = PRESETS["linear-better"]
    x_all, y_all = task_data(mnist, config, "train")
    xb, yb = prepare(x_all[:256], config), y_all[:256]
    model = build_model(config)
    before = mnist_loss(model(xb), yb).item()
    for _ in range(20):
        loss = mnist_loss(model(xb), yb)
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 1.0 * p.grad
                p.grad.zero_()
    assert mnist_loss(model(xb), yb).item() < before / 2


def test_scratch_and_nn_forms_agree_on_the_same_weights(mnist):
    x = prepare(mnist.test_images[:64], PRESETS["simple_net"])
    lin = Linear1(1, std=0.1)
    nn_lin = torch.nn.Linear(784, 1)
    with torch.no_grad():
        nn_lin.weight.copy_(lin.weights.T)
        nn_lin.bias.copy_(lin.bias)
    assert torch.allclose(lin(x), nn_lin(x), atol=1e-5)
    scratch = SimpleNetScratch(50, 10)
    net = simple_net((50,), ("relu",))
    with torch.no_grad():
        net[1].weight.copy_(scratch.w1.T)
        net[1].bias.copy_(scratch.b1)
        net[3].weight.copy_(scratch.w2.T)
        net[3].bias.copy_(scratch.b2)
    assert torch.allclose(scratch(x), net(x), atol=1e-5)


@pytest.mark.parametrize("images", [5000, 40000])
def test_fit_reports_first_after_1024_images_then_16_times_an_epoch_or_every_1024_and_learns(mnist, images):
    config = PRESETS["simple_net"].with_(train_limit=images, epochs=2, batch_size=64)
    events = list(fit(build_model(config), config, mnist))
    reports = [e for e in events if e.kind == "batch"]
    epochs = [e for e in events if e.kind == "epoch"]
    n_batches = epochs[0].n_batches
    every = 1024 // 64 if images == 5000 else n_batches // 16  # 79 batches: every 16 (1,024 images); 625: every 39
    first = [*range(16, n_batches, every), n_batches]  # the run's first report after 1,024 images: progress at once
    expected = [*range(every, n_batches, every), n_batches]
    assert [e.batch for e in reports] == first + expected and len(epochs) == 2
    assert len(expected) == (5 if images == 5000 else 17)
    assert epochs[-1].test_accuracy > 0.75
    assert all(e.images_per_s > 0 and e.lr == 0.1 for e in reports)
    # each report's loss and accuracy are those of its own batches: weighted by images, they make the epoch's
    for epoch, ends, events_of in ((epochs[0], first, reports[: len(first)]), (epochs[1], expected, reports[len(first):])):
        counts = [min(b * config.batch_size, images) - min(a * config.batch_size, images)
                  for a, b in zip([0, *ends[:-1]], ends)]
        assert epoch.loss == pytest.approx(sum(e.loss * n for e, n in zip(events_of, counts)) / images, rel=1e-6)
        assert epoch.accuracy == pytest.approx(sum(e.accuracy * n for e, n in zip(events_of, counts)) / images,
                                               rel=1e-6)


@pytest.mark.parametrize("form", ["floats", "uint8"])
def test_an_epoch_of_batches_is_every_training_image_once_in_shuffled_order(mnist, monkeypatch, form):
    # 3,000 images in blocks of 640 floats or 256 uint8 images: several blocks, each gathered into the
    # memory of the one before; uint8 images are converted a block at a time (an augmented run's path)
    monkeypatch.setattr(train, "BLOCK_IMAGES", 640)
    monkeypatch.setattr(train, "CONVERT_IMAGES", 256)
    config = PRESETS["mlp-128-64"].with_(train_limit=3000)
    images, labels = task_data(mnist, config, "train")
    inputs = train.model_inputs(images, config) if form == "floats" else images
    order = torch.randperm(3000, generator=torch.Generator().manual_seed(7))
    seen_x, seen_y = [], []
    for xb, yb in train.batches(inputs, labels, config, torch.Generator().manual_seed(7), torch.device("cpu")):
        seen_x.append(xb.clone())  # fit is done with a batch before the next block is gathered; keep a copy
        seen_y.append(yb)
    bs = config.batch_size
    assert [len(y) for y in seen_y] == [bs] * (3000 // bs) + [3000 % bs]
    assert torch.equal(torch.cat(seen_y), labels[order])
    assert torch.equal(torch.cat(seen_x), prepare(images[order], config))


def test_same_seed_same_model(mnist):
    config = PRESETS["linear-better"].with_(epochs=1)
    a, b = build_model(config), build_model(config)
    list(fit(a, config, mnist))
    list(fit(b, config, mnist))
    assert torch.equal(a.weights, b.weights)


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_build_model_draws_pytorchs_default_init_from_its_own_generator():
    from digitlab.models import CNN_ARCHS, preset_for

    for config in [*PRESETS.values(), *(preset_for(name, "fashion") for name in PRESETS)]:
        before = torch.get_rng_state()
        model = build_model(config)
        assert torch.equal(torch.get_rng_state(), before), config.preset  # the global generator untouched
        with torch.random.fork_rng(devices=[]):  # PyTorch's own initialisation, from the global generator
            torch.manual_seed(config.seed)
            if config.kind == "linear":
                reference = Linear1(config.n_outputs, config.init_std)
            elif config.kind == "mlp":
                reference = simple_net(config.hidden, config.activations, log_softmax=config.loss == "nll")
            else:
                reference = DigitCNN(**CNN_ARCHS[config.arch][1])
        want = reference.state_dict()
        assert all(torch.equal(v, want[k]) for k, v in model.state_dict().items()), config.preset


def test_clothes_are_mirrored_and_shifted_by_whole_pixels_and_digits_never_mirrored():
    from digitlab.models import TrainConfig, preset_for
    from digitlab.train import mirror_shift

    x = torch.zeros(200, 1, 28, 28)
    x[:, 0, 5, 3] = 1.0  # one lit pixel, row 5, column 3
    out = mirror_shift(x, torch.Generator().manual_seed(0))
    lit = [(t[0] > 0.5).nonzero().tolist() for t in out]
    assert all(len(p) == 1 for p in lit) and torch.allclose(out.sum((1, 2, 3)), torch.ones(200))  # moved, not blurred
    rows, cols = {p[0][0] for p in lit}, {p[0][1] for p in lit}
    assert rows == set(range(3, 8)) and cols == set(range(1, 6)) | set(range(22, 27))  # 27 - 3 = 24, mirrored; +-2
    config = preset_for("cnn-best", "fashion").with_(augment=True, augment_kind="mirror")
    check_config(config)
    with pytest.raises(ConfigError, match="Mirrored digits are no digits"):
        check_config(config.with_(dataset="mnist"))
    with pytest.raises(ConfigError, match="Unknown augmentation 'flip'"):
        check_config(config.with_(augment_kind="flip"))
    with pytest.raises(ConfigError, match="Unknown CNN architecture 'resnet'"):
        check_config(config.with_(arch="resnet"))
    old = TrainConfig.from_dict({k: v for k, v in PRESETS["cnn-best"].to_dict().items() if k != "augment_kind"})
    assert old.augment_kind == "affine" and old == PRESETS["cnn-best"]  # a record from before: turned, never mirrored


def test_two_runs_of_one_config_give_bit_identical_weights_whatever_ran_between(mnist):
    config = PRESETS["cnn-best"].with_(train_limit=1000, epochs=1)  # dropout, augmentation and shuffling
    assert config.arch == "digitcnn_bn" and config.augment
    first = build_model(config)
    list(fit(first, config, mnist))
    torch.rand(1000)  # other code drawing from the global generator, and its own
    torch.manual_seed(1234)
    build_model(config.with_(seed=7))
    second = build_model(config)
    list(fit(second, config, mnist))
    a, b = _weights(first), _weights(second)
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = build_model(config.with_(seed=43))
    list(fit(other, config.with_(seed=43), mnist))
    assert not torch.equal(other.state_dict()["fc_layers.1.weight"], a["fc_layers.1.weight"])


def test_an_epoch_event_is_the_history_row(mnist):
    config = PRESETS["simple_net"].with_(**SMALL)
    last = [e for e in fit(build_model(config), config, mnist) if e.kind == "epoch"][-1]
    row = last.record()
    assert list(row) == ["epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "images_per_s",
                         "seconds", "lr"]
    assert row["epoch"] == 1 and row["test_accuracy"] == last.test_accuracy and row["lr"] == config.lr
    assert all(math.isfinite(v) and v > 0 for v in row.values())


def test_only_public_pytorch_in_the_app():
    root = Path(__file__).resolve().parent.parent
    for path in [*root.glob("digitlab/*.py"), *root.glob("pages/*.py"), root / "app.py"]:
        found = re.findall(r"torch\._\w+|torch\.ops\.\w+", path.read_text())
        assert not found, f"{path.name}: {found}"


def test_cancel_stops_between_batches_leaving_a_usable_model(mnist):
    config = PRESETS["simple_net"].with_(train_limit=10_000, epochs=3)
    cancel = threading.Event()
    model = build_model(config)
    seen = []
    for ev in fit(model, config, mnist, cancel=cancel):
        seen.append(ev)
        if ev.kind == "batch" and not cancel.is_set():
            cancel.set()
            stopped_at = ev.batch
    assert seen[-1].kind == "cancelled" and seen[-1].batch == stopped_at < seen[-1].n_batches
    probs = predict_proba(model, config, mnist.test_images[:10])
    assert torch.isfinite(probs).all() and torch.allclose(probs.sum(1), torch.ones(10))


@pytest.mark.parametrize("precision", ["auto", "fp32"])
def test_a_loss_that_blows_up_stops_with_a_plain_message(mnist, monkeypatch, precision):
    monkeypatch.setenv("DIGITLAB_PRECISION", precision)
    config = BLOWS_UP
    with pytest.raises(TrainingDiverged, match="learning rate .* too high"):
        list(fit(build_model(config), config, mnist))


def test_bad_settings_are_refused_before_training(mnist):
    with pytest.raises(ConfigError, match="larger than the 2000 training images"):
        list(fit(build_model(PRESETS["simple_net"]), PRESETS["simple_net"].with_(batch_size=5000, **SMALL), mnist))
    with pytest.raises(ConfigError, match="learning rate"):
        list(fit(build_model(PRESETS["simple_net"]), PRESETS["simple_net"].with_(lr=-1, **SMALL), mnist))


@pytest.mark.slow  # the training process, started and waited for
def test_queue_dedupes_running_and_stored_runs_and_reports_divergence(mnist, store):
    queue = JobQueue(store)
    config = PRESETS["simple_net"].with_(train_limit=3000, epochs=1)
    first = queue.submit(config, mnist, owner="a")
    again = queue.submit(config, mnist, owner="b")
    assert again.id == first.id and again.reused
    done = queue.wait(first.id, timeout=WAIT_S)
    assert done.state == "done" and done.model_id
    stored = queue.submit(config, mnist, owner="c")
    assert stored.state == "done" and stored.model_id == done.model_id and stored.reused
    bad = queue.submit(BLOWS_UP, mnist, owner="a")
    bad = queue.wait(bad.id, timeout=WAIT_S)
    assert bad.state == "failed" and "too high" in bad.error
    assert len(store.list()) == 1  # the diverged run saved nothing


@pytest.mark.slow  # the training process, started and waited for
def test_a_cnn_stopped_in_its_second_epoch_is_kept_and_still_answers(mnist, store):
    """The queue keeps what a stopped CNN run learned (its finished epochs) as a model that loads and answers."""
    import time

    queue = JobQueue(store)
    config = PRESETS["cnn-fast"].with_(train_limit=4000, epochs=3)
    job = queue.submit(config, mnist, owner="a")
    deadline = time.time() + 120
    while time.time() < deadline:
        snap = queue.snapshot(job.id)
        if len(snap.history) == 1 and snap.state == "running":
            break
        time.sleep(0.02)
    assert queue.cancel(job.id, owner="a")
    done = queue.wait(job.id, timeout=WAIT_S)
    assert done.model_id, done
    model, info = store.load(done.model_id)
    assert 1 <= len(info.history) < 3 and info.config.epochs == len(info.history)
    probs = predict_proba(model, info.config, mnist.test_images[:20])
    assert torch.isfinite(probs).all()


def _train_small(mnist, store, name="simple_net"):
    config = PRESETS[name].with_(**SMALL)
    model = build_model(config)
    history = [
        {"epoch": e.epoch, "test_accuracy": e.test_accuracy}
        for e in fit(model, config, mnist) if e.kind == "epoch"
    ]
    info = store.save(model, config, metrics={"test_accuracy": history[-1]["test_accuracy"]}, history=history,
                      fingerprint=mnist.fingerprint(), train_seconds=1.0)
    return model, config, info


def test_store_round_trip_gives_the_same_predictions(mnist, store):
    model, config, info = _train_small(mnist, store)
    loaded, loaded_info = store.load(info.id)
    x = mnist.test_images[:100]
    assert torch.equal(predict_proba(model, config, x), predict_proba(loaded, config, x))
    assert loaded_info.config == config and store.find(config, mnist.fingerprint()).id == info.id
    store.delete(info.id)
    assert store.list() == []


def test_a_save_interrupted_midway_leaves_the_earlier_model_intact(mnist, store, monkeypatch):
    model, config, first = _train_small(mnist, store)
    real_replace = os.replace
    calls = []

    def crash_on_record(src, dst):
        calls.append(dst)
        if str(dst).endswith(".json"):
            raise OSError("disk full")  # the weights landed, the record did not
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_record)
    with pytest.raises(OSError):
        store.save(model, config.with_(seed=7), metrics={}, history=[], fingerprint="x", train_seconds=0)
    monkeypatch.setattr(os, "replace", real_replace)
    infos, problems = store.scan()
    assert [i.id for i in infos] == [first.id] and problems == []
    assert not [p for p in store.root.iterdir() if p.name.endswith(".tmp")]
    store.load(first.id)


def test_identical_models_saved_at_once_get_an_id_each(store):
    """Two identical command-line runs saving in the same second printed one id twice and stored one model (issue
    29): each save takes its id by creating its weights file exclusively."""
    from concurrent.futures import ThreadPoolExecutor

    from digitlab.models import PRESETS, build_model

    config = PRESETS["simple_net"]
    model = build_model(config)
    with ThreadPoolExecutor(4) as pool:
        infos = list(pool.map(lambda _: store.save(model, config, metrics={}, history=[], fingerprint="x",
                                                   train_seconds=0), range(4)))
    assert len({i.id for i in infos}) == 4
    assert sorted(i.id for i in store.list()) == sorted(i.id for i in infos)
    for info in infos:
        store.load(info.id)  # each record names its own weights


def test_corrupt_and_mismatched_files_are_reported_and_skipped(mnist, store):
    _, _, good = _train_small(mnist, store)
    _, _, cnn = _train_small(mnist, store, "linear-better")
    root = store.root
    # Garbage weights with an honest record: load says the file is damaged.
    (root / f"{cnn.id}.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(StoreError, match="damaged"):
        store.load(cnn.id)
    # A truncated record, a record without weights, weights of another architecture.
    (root / "broken.json").write_text('{"format_version": 1, "id": "bro')
    record = json.loads((root / f"{good.id}.json").read_text())
    (root / "orphan.json").write_text(json.dumps({**record, "id": "orphan"}))
    other = json.loads((root / f"{good.id}.json").read_text())
    other.update(id="swapped", weights_sha256=None, config={**other["config"], "hidden": [20]})
    (root / "swapped.json").write_text(json.dumps(other))
    (root / "swapped.safetensors").write_bytes((root / f"{good.id}.safetensors").read_bytes())
    infos, problems = store.scan()
    reasons = {p.name: p.reason for p in problems}
    assert "not readable JSON" in reasons["broken"] and "weights file is missing" in reasons["orphan"]
    assert good.id in [i.id for i in infos]
    with pytest.raises(StoreError, match="do not fit its architecture"):
        store.load("swapped")
    with pytest.raises(StoreError, match="not a model id"):
        store.load("../etc/passwd")
    store.load(good.id)


def test_any_two_classes_of_either_dataset_make_a_yes_no_task(mnist, fashion):
    config = PRESETS["linear-better"]  # 3 vs 7 on MNIST, the lesson's default
    assert config.pair == (3, 7) and config.n_outputs == 1 and config.dataset == "mnist"
    x, y = task_data(mnist, config, "test")
    assert len(x) == int(((mnist.test_labels == 3) | (mnist.test_labels == 7)).sum()) and y.shape == (len(x), 1)
    easy, hard = config.with_(dataset="fashion", task="1v9"), config.with_(dataset="fashion", task="6v0")
    assert fashion.classes[1] == "Trouser" and fashion.classes[6] == "Shirt" and fashion.classes[0] == "T-shirt/top"
    scores = {}
    for c in (easy, hard):
        last = [e for e in fit(build_model(c), c.with_(epochs=1), fashion) if e.kind == "epoch"][-1]
        x, _ = task_data(fashion, c, "test")
        assert len(x) == 2000  # 1,000 test images of each class
        scores[c.task] = last.test_accuracy
    assert scores["1v9"] > 0.97 and scores["6v0"] < scores["1v9"]  # trousers vs boots is easy; shirts vs T-shirts not
    for bad in ("3v3", "3v", "12v7", "three"):
        with pytest.raises(ConfigError, match="neither 'digits' nor two different classes"):
            check_config(config.with_(task=bad))
    with pytest.raises(ConfigError, match="Unknown dataset 'kmnist'"):
        check_config(config.with_(dataset="kmnist"))


def test_the_training_process_loads_the_dataset_the_config_names(mnist, fashion, tmp_path):
    from digitlab.runs.execute import load_data, run_job
    from digitlab.runs.spec import JobSpec
    from digitlab.runs.steering import Steering
    from digitlab.store import ModelStore

    cache: dict = {}
    for data in (fashion, mnist):
        config = PRESETS["simple_net"].with_(dataset=data.spec.key, epochs=1, train_limit=2000)
        spec = JobSpec.of(data.spec.key, config, data, ModelStore(tmp_path))  # the store: a bare Path has .root too ("/")
        done = run_job(spec, load_data(spec, cache), Steering(), lambda m: None)
        assert done.state == "done", done
        info = ModelStore(tmp_path).info(done.model_id)
        assert info.config.dataset == data.spec.key and info.fingerprint == data.fingerprint()
    assert {d.source.dataset for d in cache.values()} == {"mnist", "fashion"}  # one of each kept


def test_every_120th_training_image_is_held_out_of_training_and_calibrates_the_model(mnist):
    """The held-out images and the training images split the training set; a run never sees the held-out ones;
    an older record (no hold_out_every) trained on all of them and holds none out."""
    from digitlab.models import TrainConfig
    from digitlab.train import held_out_rows, task_data, task_size

    config = PRESETS["simple_net"]
    train_x, _ = task_data(mnist, config, "train")
    held_x, held_y = task_data(mnist, config, "held_out")
    n = len(mnist.train_images)
    assert (len(train_x), len(held_x)) == (n - math.ceil(n / 120), math.ceil(n / 120))
    assert (task_size(mnist, config), task_size(mnist, config, "held_out")) == (len(train_x), len(held_x))
    assert torch.equal(held_x, mnist.train_images[held_out_rows(n, config)])
    seen = {bytes(x.numpy()) for x in train_x[:: max(1, len(train_x) // 5000)]}
    assert not seen & {bytes(x.numpy()) for x in held_x}  # (MNIST's training images are all different)
    pair = PRESETS["linear-better"]
    labels = mnist.train_labels[held_out_rows(n, pair)]
    assert len(task_data(mnist, pair, "held_out")[0]) == int(((labels == 3) | (labels == 7)).sum())
    old = TrainConfig.from_dict({k: v for k, v in config.to_dict().items() if k != "hold_out_every"})
    assert old.hold_out_every == 0 and len(task_data(mnist, old, "held_out")[0]) == 0
    assert len(task_data(mnist, old, "train")[0]) == n


def test_the_store_records_the_dataset_and_any_pair(fashion, store):
    """A Fashion-MNIST pair model keeps its dataset and its two classes; the same settings on MNIST are another run;
    a record from before datasets reads as MNIST; an unknown dataset or a pair of one class is skipped, with why."""
    config = PRESETS["linear-better"].with_(dataset="fashion", task="6v0", epochs=1, train_limit=1000)
    model = build_model(config)
    history = [{"epoch": e.epoch, "test_accuracy": e.test_accuracy} for e in fit(model, config, fashion)
               if e.kind == "epoch"]
    info = store.save(model, config, metrics={"test_accuracy": history[-1]["test_accuracy"]}, history=history,
                      fingerprint=fashion.fingerprint(), train_seconds=1.0)
    back = store.info(info.id)
    assert (back.config.dataset, back.config.pair, back.config.classes) == ("fashion", (6, 0), ("T-shirt/top", "Shirt"))
    assert back.config.question == "Shirt or T-shirt/top?"
    assert config.with_(dataset="mnist").key() != config.key()  # the same config on two datasets: two runs
    assert store.find(config, fashion.fingerprint()).id == info.id
    assert store.find(config.with_(dataset="mnist"), fashion.fingerprint()) is None
    record = json.loads((store.root / f"{info.id}.json").read_text())
    weights = (store.root / f"{info.id}.safetensors").read_bytes()
    for name, change in (("old", {"task": "3v7"}), ("kmnist", {"dataset": "kmnist"}), ("same", {"task": "6v6"})):
        config_dict = {**record["config"], **change}
        if name == "old":
            del config_dict["dataset"]  # written before Fashion-MNIST came
        (store.root / f"{name}.json").write_text(json.dumps({**record, "id": name, "config": config_dict,
                                                             "weights_sha256": None}))
        (store.root / f"{name}.safetensors").write_bytes(weights)
    infos, problems = store.scan()
    reasons = {p.name: p.reason for p in problems}
    assert {i.id: i.config.dataset for i in infos}["old"] == "mnist"
    assert "kmnist" in reasons["kmnist"] and "6v6" in reasons["same"]


def test_the_web_side_builds_shapes_and_lesson_models_without_importing_torchs_compiler(mnist):
    """Checking a stored model's shapes (store.skeleton), the linear lesson's seeded start and the MLP page's layer
    table do not pull in torch._dynamo: random numbers on the meta device did, 1.7 s of CPU on a class's first visit
    to Home. The layer table of the widest MLP a student may ask for (6 x 4096) costs the web process no weights.
    Nor do a fresh model of every preset (the CNN page's untrained start) or the MLP page's two forms side by side
    pull in torch's symbolic shapes (sympy, 36 MB in the web server): to_empty() from the meta device did."""
    import subprocess
    import sys

    code = ("import sys, torch\n"
            "from digitlab import lessons, store\n"
            "from digitlab.models import PRESETS\n"
            "for p in PRESETS.values(): store.skeleton(p)\n"
            "m = lessons.seeded_linear1(1.0)\n"
            "torch.manual_seed(42); from digitlab.models import Linear1; ref = Linear1(1, 1.0)\n"
            "assert torch.equal(m.weights, ref.weights) and torch.equal(m.bias, ref.bias)\n"
            "import resource; from digitlab import mlp_lessons; peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "rows, total = mlp_lessons.layer_rows(PRESETS['mlp-128-64'].with_(hidden=(4096,) * 6))\n"
            "assert total > 87_000_000 and rows[-1]['output shape'] == '10', rows\n"
            "assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 50_000, 'kB for the layer table'\n"
            "from digitlab.models import build_model\n"
            "for p in PRESETS.values(): build_model(p)\n"
            "from digitlab.data import load_dataset\n"
            "mlp_lessons.scratch_vs_nn(load_dataset('mnist', allow_download=False))\n"
            "print('torch._dynamo' in sys.modules, 'sympy' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False False"
