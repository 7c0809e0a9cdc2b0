"""Shared fixtures: the real MNIST and Fashion-MNIST (DIGITLAB_DATA_DIR, DIGITLAB_FASHION_DIR), a throwaway model
store per test process, and the models the tests look at, trained once per run.

Two tiers (README, "Run every test"): tests marked ``slow`` start real services (a browser, a Streamlit server,
the command line in its own process, PostgreSQL, Ray, HAProxy); the rest run in the test process.
``-m "not slow"`` is the quick loop; the README's command runs both, spread over the cores by pytest-xdist.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from digitlab import settings

ROOT = Path(__file__).resolve().parent.parent

# Set before anything caches a store: tests never touch ./models or ./data. One folder per test process.
_tmp = Path(tempfile.mkdtemp(prefix="digitlab-tests-"))
# The training process at the test's own priority: a test waits for it (on a busy machine, 10 below the test is
# starved by everything else that runs).
for _name, _value in (("DIGITLAB_MODEL_DIR", _tmp / "models"), ("DIGITLAB_CACHE_DIR", _tmp / "data"),
                      ("DIGITLAB_OFFLINE", "1"), ("DIGITLAB_WORKER_NICE", 0)):
    if not settings.is_set(_name):
        settings.put(_name, _value)

# Modules whose tests share nothing costly beyond the session's fixtures: pytest-xdist may spread their tests over
# the workers one by one. Every other module runs whole on one worker (--dist loadgroup), so what it starts once
# (an app, a browser, a database, a trained model of its own) is started once.
SPREAD = {"test_core", "test_data", "test_lessons", "test_backprop", "test_evaluate", "test_features",
          "test_conv_arithmetic", "test_analysis", "test_finetune", "test_server_safety", "test_app_pages",
          "test_page_mlp", "test_page_cnn", "test_page_linear", "test_page_evaluate", "test_page_features",
          "test_page_teacher", "test_page_links", "test_page_sketch", "test_lr_find", "test_cli",
          "test_process_runner", "test_serve"}  # these two: each test starts its own processes


def pytest_configure(config):
    """With -n (pytest-xdist), before its workers start: each test process, and every process it starts, computes
    on one thread. As many processes as cores already keep every core busy; more threads on top only wait for one
    another (an OpenMP thread spinning for a core that another process holds)."""
    # A trained model's robustness curves, worked out ahead in the training process's idle time, are seconds of CPU
    # after every run that no test but their own looks at: here they wait until Evaluate asks (the tests of the
    # default set it back, test_process_runner's lull test among them).
    if not settings.is_set("DIGITLAB_ANALYSE_AHEAD"):
        settings.put("DIGITLAB_ANALYSE_AHEAD", 0)
    if getattr(config.option, "numprocesses", None):
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        if not settings.is_set("DIGITLAB_THREADS"):
            settings.put("DIGITLAB_THREADS", 1)


# Whole modules of real services (HAProxy and web processes), in the slow tier as they are.
SLOW_MODULES = {"test_serve"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """A browser test is a slow one, and so is every test of SLOW_MODULES; each module's tests stay together on one
    xdist worker unless SPREAD. The longest work first, so that it is not the last left running: the slow tier,
    then within each tier the modules that run whole, then the tests spread one by one (the files' order within)."""
    def module(item) -> str:
        return item.module.__name__.rpartition(".")[2] if item.module else ""

    for item in items:
        if (item.get_closest_marker("browser") or module(item) in SLOW_MODULES) and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)
        if module(item) not in SPREAD and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(module(item)))
    # Within the slow tier, what needs no trained model first: while one worker trains the session's models (the
    # `trained` fixture), the other is not left waiting for them.
    items.sort(key=lambda item: (not item.get_closest_marker("slow"), "trained" in item.fixturenames,
                                 module(item) in SPREAD))


def _use_shared(name: str) -> None:
    if not settings.is_set(name):
        default = ROOT.parent / "shared" / ("mnist" if name == "DIGITLAB_DATA_DIR" else "fashion-mnist")
        if default.is_dir():
            settings.put(name, default)


@pytest.fixture(scope="session")
def mnist():
    """The full MNIST, loaded once. CI points DIGITLAB_DATA_DIR at ../shared/mnist."""
    from digitlab.data import load_mnist

    _use_shared("DIGITLAB_DATA_DIR")
    data = load_mnist(allow_download=False)
    assert data.source.kind == "folder", f"tests need the real MNIST via DIGITLAB_DATA_DIR: {data.source}"
    return data


@pytest.fixture(scope="session")
def fashion():
    """The full Fashion-MNIST, loaded once. CI points DIGITLAB_FASHION_DIR at ../shared/fashion-mnist."""
    from digitlab.data import load_dataset

    _use_shared("DIGITLAB_FASHION_DIR")
    data = load_dataset("fashion", allow_download=False)
    assert data.source.kind == "folder", f"tests need the real Fashion-MNIST via DIGITLAB_FASHION_DIR: {data.source}"
    return data


@pytest.fixture()
def store(tmp_path):
    from digitlab.store import ModelStore

    return ModelStore(tmp_path / "models")


TRAINED = {  # small but real
    "linear": ("linear-better", {"epochs": 3}),
    "mlp": ("simple_net", {"epochs": 2, "train_limit": 20_000}),
    "cnn": ("cnn-seed", {"epochs": 1, "train_limit": 6_000, "batch_size": 128}),
}


@pytest.fixture(scope="session")
def trained(mnist, tmp_path_factory):
    """Real models in the session's model store (DIGITLAB_MODEL_DIR), trained on real MNIST once per run.

    The linear 3-vs-7 model, simple_net, and a DigitCNN on a 6,000-image subset, trained through the real queue on
    the in-process runner (the training process has tests of its own), each with the first part of its analysis,
    as a finished run leaves it. Under pytest-xdist the first worker to ask trains them in a folder all workers
    see; each worker copies them into its own store (its tests may damage or delete what they find there).
    Returns {name: ModelInfo}. Pages under AppTest see them through the same store.
    """
    from classroom import train_in_process
    from filelock import FileLock

    from digitlab.models import PRESETS
    from digitlab.runs.execute import analyse_model
    from digitlab.store import ModelStore

    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "trained-models"
    with FileLock(f"{shared}.lock"):
        ids_file = shared / "ids.json"
        if not ids_file.is_file():
            ids = train_in_process(ModelStore(shared), mnist, [PRESETS[p].with_(**c) for p, c in TRAINED.values()])
            assert len(ids) == len(TRAINED), "a model the tests look at did not train"
            for model_id in ids:
                analyse_model(str(shared), model_id, mnist, complete=False)
            ids_file.write_text(json.dumps(dict(zip(TRAINED, ids))))
        ids = json.loads(ids_file.read_text())
        store = ModelStore()
        store.root.mkdir(parents=True, exist_ok=True)
        for path in shared.iterdir():
            if path.is_file() and path.name != ids_file.name:
                shutil.copy2(path, store.root / path.name)
    return {name: store.info(model_id) for name, model_id in ids.items()}

