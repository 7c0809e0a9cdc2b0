"""Shared fixtures: the real MNIST and Fashion-MNIST (DIGITLAB_DATA_DIR, DIGITLAB_FASHION_DIR) and a throwaway
model store per test run."""

import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Set before anything caches a store: tests never touch ./models or ./data.
_tmp = Path(tempfile.mkdtemp(prefix="digitlab-tests-"))
os.environ.setdefault("DIGITLAB_MODEL_DIR", str(_tmp / "models"))
os.environ.setdefault("DIGITLAB_CACHE_DIR", str(_tmp / "data"))
os.environ.setdefault("DIGITLAB_OFFLINE", "1")


@pytest.fixture(scope="session")
def mnist():
    """The full MNIST, loaded once. CI points DIGITLAB_DATA_DIR at ../shared/mnist."""
    from digitlab.data import load_mnist

    if not os.environ.get("DIGITLAB_DATA_DIR"):
        default = ROOT.parent / "shared" / "mnist"
        if default.is_dir():
            os.environ["DIGITLAB_DATA_DIR"] = str(default)
    data = load_mnist(allow_download=False)
    assert data.source.kind == "folder", f"tests need the real MNIST via DIGITLAB_DATA_DIR: {data.source}"
    return data


@pytest.fixture(scope="session")
def fashion():
    """The full Fashion-MNIST, loaded once. CI points DIGITLAB_FASHION_DIR at ../shared/fashion-mnist."""
    from digitlab.data import load_dataset

    if not os.environ.get("DIGITLAB_FASHION_DIR"):
        default = ROOT.parent / "shared" / "fashion-mnist"
        if default.is_dir():
            os.environ["DIGITLAB_FASHION_DIR"] = str(default)
    data = load_dataset("fashion", allow_download=False)
    assert data.source.kind == "folder", f"tests need the real Fashion-MNIST via DIGITLAB_FASHION_DIR: {data.source}"
    return data


@pytest.fixture()
def store(tmp_path):
    from digitlab.store import ModelStore

    return ModelStore(tmp_path / "models")


@pytest.fixture(scope="session")
def trained(mnist):
    """Real models in the session's model store (DIGITLAB_MODEL_DIR), trained once on real MNIST.

    Small but real: the linear 3-vs-7 model, simple_net, and a DigitCNN on a 6,000-image subset.
    Returns {name: ModelInfo}. Pages under AppTest see them through the same store.
    """
    from digitlab.models import PRESETS
    from digitlab.runs.queue import JobQueue
    from digitlab.store import ModelStore

    queue = JobQueue(ModelStore())
    configs = {
        "linear": PRESETS["linear-better"].with_(epochs=3),
        "mlp": PRESETS["simple_net"].with_(epochs=2, train_limit=20_000),
        "cnn": PRESETS["cnn-seed"].with_(epochs=1, train_limit=6_000, batch_size=128),
    }
    out = {}
    for name, config in configs.items():
        snap = queue.submit(config, mnist, owner="tests")
        snap = queue.wait(snap.id, timeout=300)
        assert snap.state == "done", snap.error
        out[name] = queue.store.info(snap.model_id)
    return out
