"""Take it home (issue 31): a stored model as one zip -- weights, record, ONNX, a standalone train.py, predict.py,
README -- made by `python -m digitlab export`, whose ONNX answers as the stored model does and whose train.py
trains in a process of its own, torch and torchvision only."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from digitlab import export
from digitlab.batching import prepare, task_data
from digitlab.models import PRESETS, build_model
from digitlab.store import ModelStore

sys.path.insert(0, str(Path(__file__).resolve().parent))

from classroom import train_in_process  # noqa: E402

pytestmark = pytest.mark.slow  # the exporter, and train.py in processes of their own
ROOT = Path(__file__).resolve().parent.parent
CNN_PRESETS = ("cnn-seed", "cnn-fast", "cnn-best")  # each DigitCNN the presets build (digitcnn, _fast, _bn)


@pytest.fixture(scope="module")
def models(trained, mnist, tmp_path_factory) -> tuple[ModelStore, dict[str, str]]:
    """The session's linear (3 vs 7) and MLP, and each CNN preset trained briefly on real MNIST here."""
    store = ModelStore(tmp_path_factory.mktemp("export-models"))
    for info in (trained["linear"], trained["mlp"]):
        for suffix in (".json", ".safetensors"):
            (store.root / f"{info.id}{suffix}").write_bytes((ModelStore().root / f"{info.id}{suffix}").read_bytes())
    ids = train_in_process(store, mnist, [PRESETS[p].with_(epochs=1, train_limit=3000, augment=False)
                                          for p in CNN_PRESETS])
    return store, {"linear": trained["linear"].id, "mlp": trained["mlp"].id, **dict(zip(CNN_PRESETS, ids, strict=True))}


@pytest.mark.parametrize("name", ["linear", "mlp", *CNN_PRESETS])
def test_the_onnx_model_in_onnx_runtime_agrees_with_the_stored_model_on_the_test_images(models, mnist, name):
    import onnxruntime

    store, ids = models
    model, info = store.load(ids[name])
    images, targets = task_data(mnist, info.config, "test")  # 10,000 (the linear model's: the 3s and 7s)
    x = prepare(images, info.config).reshape(len(images), 1, 28, 28)
    session = onnxruntime.InferenceSession(export.onnx_bytes(model))
    theirs = session.run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        ours = model.eval()(x if info.config.kind == "cnn" else x.flatten(1)).numpy()
    if info.config.pair:
        agree = ((theirs[:, 0] > 0) == (ours[:, 0] > 0)).mean()
    else:
        agree = (theirs.argmax(1) == ours.argmax(1)).mean()
    assert len(x) >= 2000 and agree >= 0.999, f"{name}: {agree:.4%} of {len(x)} agree"


def test_an_export_zip_trains_again_with_its_own_train_py_and_predicts_a_png(models, mnist, tmp_path):
    """The zip from the command line, unpacked as a student would; its train.py run for one epoch on the bundled
    sample (torch and torchvision only, outside this checkout), its weights loading into DigitLab's own model; its
    predict.py reading a PNG of a 7 drawn dark on light, with ONNX Runtime and with the weights."""
    store, ids = models
    done = subprocess.run([sys.executable, "-m", "digitlab", "export", ids["cnn-fast"], "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "DIGITLAB_MODEL_DIR": str(store.root)})
    assert done.returncode == 0, done.stderr[-2000:]
    archive = tmp_path / f"digitlab-{ids['cnn-fast']}.zip"
    with zipfile.ZipFile(archive) as z:
        names = {Path(n).name for n in z.namelist()}
        z.extractall(tmp_path / "home")
    assert names == {"model.safetensors", "model.json", "model.onnx", "train.py", "predict.py", "notebook.ipynb",
                     "README.md"}
    folder = tmp_path / "home" / f"digitlab-{ids['cnn-fast']}"
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no PYTHONPATH: nothing of DigitLab is importable
    trained = subprocess.run([sys.executable, "train.py", "--data", str(ROOT / "digitlab" / "sample"), "--epochs", "1"],
                             cwd=folder, capture_output=True, text=True, timeout=600, env=clean)
    assert trained.returncode == 0, trained.stderr[-2000:]
    accuracy = float(trained.stdout.split("test accuracy ")[1].split("%")[0])
    assert accuracy > 80, trained.stdout  # one epoch on 5,000 sample digits
    retrained = build_model(store.info(ids["cnn-fast"]).config)
    retrained.load_state_dict(torch.load(folder / "model_retrained.pt", weights_only=True))  # the same layers, names
    build_model(store.info(ids["cnn-fast"]).config).load_state_dict(load_file(folder / "model.safetensors"))

    images, labels = mnist.split("test")
    seven = images[(labels == 7).nonzero()[0, 0]].numpy()
    Image.fromarray(255 - seven).resize((140, 140)).save(tmp_path / "seven.png")  # a photo: dark ink, larger
    for how in ([], ["--torch"]):
        said = subprocess.run([sys.executable, "predict.py", str(tmp_path / "seven.png"), *how], cwd=folder,
                              capture_output=True, text=True, timeout=120, env=clean)
        assert said.returncode == 0, said.stderr[-2000:]
        assert said.stdout.splitlines()[0].startswith("7: "), said.stdout
    import nbformat
    from nbclient import NotebookClient

    book = nbformat.read(folder / "notebook.ipynb", as_version=4)  # top to bottom on the bundled sample
    book.cells[1].source = book.cells[1].source.replace("DATA = None", f"DATA = {str(ROOT / 'digitlab' / 'sample')!r}")
    NotebookClient(book, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert "test accuracy" in "".join(o.get("text", "") for o in outputs)
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3  # the digits, the weights, the answers
    readme = (folder / "README.md").read_text()
    assert "python train.py" in readme and "python predict.py" in readme and "CC BY-SA 3.0" in readme



def test_home_prepares_a_models_zip_and_offers_it_for_download(trained):
    """Home's "Take a model home": the best model picked by default, its zip prepared on request, then a download
    button with the zip's name and size (the browser's download: tests/test_browser_*.py)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300).run()
    assert not at.exception, [e.value for e in at.exception]
    prepare = next(b for b in at.button if b.label == "Prepare the zip")
    model_id = at.selectbox(key="home_export_model").value
    prepare.click().run()
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    buttons = [e for e in at.get("download_button") if f"digitlab-{model_id}.zip" in e.proto.label]
    assert buttons and buttons[0].proto.label.endswith(("MB)", "kB)"))
    assert (ModelStore().root / "exports" / f"digitlab-{model_id}.zip").is_file()  # kept: the next one is instant


def test_an_export_past_its_limit_is_a_message_on_the_page_not_a_traceback(trained, monkeypatch):
    """subprocess.TimeoutExpired went up to Home's take-home box as a traceback (it caught only ExportError,
    StoreError and OSError); a zip that takes too long is now a sentence on the page."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300).run()
    model_id = at.selectbox(key="home_export_model").value
    (ModelStore().root / "exports" / f"digitlab-{model_id}.zip").unlink(missing_ok=True)  # made afresh
    monkeypatch.setattr(export, "EXPORT_TIMEOUT_S", 0.05)  # a Python process cannot even start in 50 ms
    next(b for b in at.button if b.label == "Prepare the zip").click().run()
    assert not at.exception, [e.value for e in at.exception]
    said = " ".join(e.value for e in at.error)
    assert "That model could not be exported: writing the zip took over 0.05 seconds and was stopped" in said, said
    assert not at.get("download_button")
