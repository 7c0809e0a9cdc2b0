"""A stored model as one zip a student takes home: its weights and record, an ONNX file, a standalone train.py
that reproduces its recipe (torch and torchvision only), a predict.py, and a README.

``python -m digitlab export MODEL_ID [--out FOLDER]`` writes it; the pages' download buttons run that command in a
process of its own (torch.onnx.export imports PyTorch's compiler stack, which the web server should not carry) and
keep the zip beside the model (``exports/``), so a second download costs nothing. The code in train.py is written
from the model itself: each nn layer as its constructor (``nn.Linear(in_features=784, ...)``), so the weights load
into ``make_model()`` with the same names.
"""

from __future__ import annotations

import inspect
import io
import os
import pprint
import subprocess
import sys
import tempfile
import zipfile
from importlib import resources
from pathlib import Path
from string import Template

import torch
from torch import nn

from .batching import AUGMENTERS
from .config import TrainConfig
from .data import DATASETS, NORMALISATIONS
from .models import DigitCNN, Linear1, SimpleNetScratch
from .store import ModelStore

ROOT = Path(__file__).resolve().parent.parent
EXPORT_TIMEOUT_S = 180


class ExportError(RuntimeError):
    pass


# ---------------------------------------------------------------- train.py's parts, written from the model


def _layers(seq: nn.Sequential, indent: str) -> str:
    return ",\n".join(f"{indent}nn.{layer!r}" for layer in seq)


def model_code(model: nn.Module) -> str:
    """``make_model()`` for this model, as plain PyTorch whose parameters have the stored weights' names."""
    if isinstance(model, Linear1):
        n_out = model.bias.shape[0]
        return f'''class Linear1(nn.Module):
    """linear1(xb) = xb @ weights + bias: one weight per pixel (and per output), and a bias."""

    def __init__(self):
        super().__init__()
        self.weights = nn.Parameter(torch.randn(28 * 28, {n_out}) * RECIPE["init_std"])
        self.bias = nn.Parameter(torch.randn({n_out}) * RECIPE["init_std"])

    def forward(self, xb):
        return xb.reshape(xb.shape[0], -1) @ self.weights + self.bias


def make_model():
    return Linear1()'''
    if isinstance(model, SimpleNetScratch):
        hidden, n_out = model.w2.shape
        return f'''class SimpleNet(nn.Module):
    """simple_net by hand: res = xb @ w1 + b1; res = res.max(0); res @ w2 + b2."""

    def __init__(self):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(28 * 28, {hidden}) / 28)
        self.b1 = nn.Parameter(torch.randn({hidden}) / 28)
        self.w2 = nn.Parameter(torch.randn({hidden}, {n_out}) * {hidden} ** -0.5)
        self.b2 = nn.Parameter(torch.randn({n_out}) * {hidden} ** -0.5)

    def forward(self, xb):
        res = xb.reshape(xb.shape[0], -1) @ self.w1 + self.b1
        res = res.clamp(min=0)
        return res @ self.w2 + self.b2


def make_model():
    return SimpleNet()'''
    if isinstance(model, DigitCNN):
        return f'''class DigitCNN(nn.Module):
    """Convolutions that find strokes, then pooling, twice; then two linear layers that read the maps."""

    def __init__(self):
        super().__init__()
        self.conv_layers = nn.Sequential(
{_layers(model.conv_layers, " " * 12)},
        )
        self.fc_layers = nn.Sequential(
{_layers(model.fc_layers, " " * 12)},
        )

    def forward(self, x):
        return self.fc_layers(self.conv_layers(x))


def make_model():
    return DigitCNN()'''
    if isinstance(model, nn.Sequential):
        return f'''def make_model():
    return nn.Sequential(
{_layers(model, " " * 8)},
    )'''
    raise ExportError(f"no train.py for a {type(model).__name__}")


def loss_code(config: TrainConfig) -> str:
    if config.loss == "mnist_loss":
        return '''def loss_function(scores, targets):
    """mnist_loss: squash to 0..1 with the sigmoid, then how far each prediction is from its target."""
    predictions = scores.sigmoid()
    return torch.where(targets == 1, 1 - predictions, predictions).mean()'''
    if config.loss == "nll":
        return '''def loss_function(scores, targets):
    """The model ends in LogSoftmax: the negative log-likelihood of the right class."""
    return F.nll_loss(scores, targets)'''
    return f'''def loss_function(scores, targets):
    """Cross-entropy (log_softmax, then the right class's negative log); label smoothing {config.label_smoothing:g}."""
    return F.cross_entropy(scores, targets, label_smoothing=RECIPE["label_smoothing"])'''


def augment_code(config: TrainConfig) -> str:
    """DigitLab's own augmentation function, its source as it is (batching.augment or batching.mirror_shift)."""
    if not config.augment:
        return "augment = None  # the recipe trains on the images as they are"
    helper = AUGMENTERS[config.augment_kind]
    source = inspect.getsource(helper)
    return source if helper.__name__ == "augment" else f"{source}\n\naugment = {helper.__name__}"


def optimizer_code(config: TrainConfig) -> str:
    if config.form == "scratch":
        return ('optimizer = torch.optim.SGD(model.parameters(), lr=RECIPE["lr"])  '
                '# the seeds\' sgd_step: p -= lr * p.grad')
    if config.optimizer == "adam":
        return ('optimizer = torch.optim.Adam(model.parameters(), lr=RECIPE["lr"],\n'
                '                                 weight_decay=RECIPE["weight_decay"])')
    momentum = 'RECIPE["momentum"]' if config.optimizer == "momentum" else "0.0"
    return (f'optimizer = torch.optim.SGD(model.parameters(), lr=RECIPE["lr"], momentum={momentum},\n'
            '                                weight_decay=RECIPE["weight_decay"])')


def schedule_code(config: TrainConfig) -> str:
    if config.schedule == "onecycle" and config.form != "scratch":
        return ('# one cycle: the learning rate climbs to RECIPE["lr"], then comes down to almost nothing\n'
                '    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=RECIPE["lr"], total_steps=steps)')
    return "scheduler = None  # a constant learning rate"


# ---------------------------------------------------------------- the files


def _fill(name: str, **values) -> str:
    return Template(resources.files("digitlab").joinpath("templates", name).read_text()).substitute(values)


def onnx_bytes(model: nn.Module) -> bytes:
    """The model as ONNX (torch.onnx.export), taking float32 [batch, 1, 28, 28] and giving its scores."""
    example = torch.zeros(2, 1, 28, 28)  # the batch size stays free: the by-hand forms reshape by xb.shape[0]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        program = torch.onnx.export(model.eval(), (example,), dynamo=True, verbose=False, input_names=["image"],
                                    output_names=["scores"], dynamic_shapes=({0: torch.export.Dim("batch")},))
        program.save(str(path))
        return path.read_bytes()


def files(store: ModelStore, model_id: str) -> dict[str, bytes]:
    """The zip's files, by name."""
    model, info = store.load(model_id)
    config = info.config
    spec = DATASETS[config.dataset]
    mean, std = NORMALISATIONS[config.norm]
    pair = config.pair
    classes = [spec.classes[pair[0]], spec.classes[pair[1]]] if pair else list(spec.classes)
    accuracy = info.metrics.get("test_accuracy")
    said = f"{accuracy:.2%} test accuracy" if accuracy is not None else "no recorded accuracy"
    values = {"title": info.title, "model_id": model_id, "dataset_title": spec.title, "epochs": config.epochs,
              "accuracy": said, "mean": repr(mean), "std": repr(std), "classes": repr(classes)}
    train_py = _fill("export_train.py.txt", **values, recipe=pprint.pformat(config.to_dict(), width=100, sort_dicts=False),
                     pair_line=f"PAIR = {pair!r}  # (yes, no)" if pair else "PAIR = None  # all ten classes",
                     model_code=model_code(model), loss_code=loss_code(config), augment_code=augment_code(config),
                     optimizer_code=optimizer_code(config), schedule_code=schedule_code(config),
                     torchvision_class="FashionMNIST" if config.dataset == "fashion" else "MNIST",
                     functional_import="import torch.nn.functional as F\n"
                     if config.loss != "mnist_loss" or config.augment else "")
    readme = _fill("export_readme.md.txt", **values, licence=spec_licence(config.dataset))
    return {
        "model.safetensors": (store.root / f"{model_id}.safetensors").read_bytes(),
        "model.json": (store.root / f"{model_id}.json").read_bytes(),
        "model.onnx": onnx_bytes(model),
        "train.py": train_py.encode(),
        "predict.py": _fill("export_predict.py.txt", **values).encode(),
        "notebook.ipynb": notebook(info.title, model_id, config.kind).encode(),
        "README.md": readme.encode(),
    }


def notebook(title: str, model_id: str, kind: str) -> str:
    """notebook.ipynb: train.py's steps one cell at a time, with pictures (the digits, what the first layer looks
    for, the answers), for Jupyter or Colab (with train.py beside it)."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    first = ("model.conv_layers[0].weight[:, 0]" if kind == "cnn" else
             "first_layer_weights(model)")
    cells = [
        new_markdown_cell(f"# {title}\n\nDigitLab model `{model_id}`, trained again step by step with `train.py`'s "
                          "functions (keep `train.py` beside this notebook). Set `DATA` to a folder of MNIST's four "
                          "IDX `.gz` files, or leave it `None` to let torchvision download them."),
        new_code_cell("DATA = None  # a folder with the four IDX .gz files; None: torchvision downloads them\n"
                      "EPOCHS = 1  # the recipe's own: RECIPE['epochs']"),
        new_code_cell("%matplotlib inline\nimport math\n\nimport matplotlib.pyplot as plt\nimport torch\n\n"
                      "from train import RECIPE, load, make_model, make_optimizer, task, test, train\n\nRECIPE"),
        new_markdown_cell("## The data\n\nThe images are 28x28 grey pixels, 0 (black) to 255 (white)."),
        new_code_cell("train_images, train_labels = task(*load('train', DATA), 'train')\n"
                      "test_images, test_labels = task(*load('test', DATA), 'test')\n"
                      "fig, axes = plt.subplots(2, 8, figsize=(10, 3))\n"
                      "for ax, image, label in zip(axes.flat, train_images, train_labels):\n"
                      "    ax.imshow(image, cmap='gray'); ax.set_title(int(label)); ax.axis('off')\n"
                      "len(train_images), len(test_images)"),
        new_markdown_cell("## The model"),
        new_code_cell("torch.manual_seed(RECIPE['seed'])\nmodel = make_model()\nmodel"),
        new_markdown_cell("## Training, one epoch at a time"),
        new_code_cell("optimizer, scheduler = make_optimizer(model, EPOCHS * math.ceil(len(train_images) / "
                      "RECIPE['batch_size']))\n"
                      "gen = torch.Generator().manual_seed(RECIPE['seed'])\n"
                      "for epoch in range(1, EPOCHS + 1):\n"
                      "    train(model, train_images, train_labels, optimizer, scheduler, gen, epoch)\n"
                      "    print(f'test accuracy {test(model, test_images, test_labels):.2%}')"),
        new_markdown_cell("## What the first layer looks for\n\nEach picture is one unit's (or filter's) weights: "
                          "light where a white pixel pushes it up, dark where it pushes it down."),
        new_code_cell("def first_layer_weights(model):\n"
                      "    p = next(model.parameters())\n"
                      "    return (p.T if p.shape[0] == 784 else p).reshape(-1, 28, 28)\n\n"
                      f"weights = {first}.detach()[:16]\n"
                      "fig, axes = plt.subplots(2, 8, figsize=(10, 3))\n"
                      "for ax, w in zip(axes.flat, weights):\n"
                      "    ax.imshow(w, cmap='gray'); ax.axis('off')"),
        new_markdown_cell("## Its answers on test images"),
        new_code_cell("from train import to_input\n\nmodel.eval()\nwith torch.no_grad():\n"
                      "    scores = model(to_input(test_images[:16].float() / 255))\n"
                      "answers = (scores[:, 0] > 0).long() if scores.shape[1] == 1 else scores.argmax(1)\n"
                      "fig, axes = plt.subplots(2, 8, figsize=(10, 3))\n"
                      "for ax, image, answer, label in zip(axes.flat, test_images, answers, test_labels):\n"
                      "    ax.imshow(image, cmap='gray'); ax.axis('off')\n"
                      "    ax.set_title(int(answer), color='green' if int(answer) == int(label) else 'red')"),
    ]
    return nbformat.writes(new_notebook(cells=cells, metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3", "language": "python"}}))


def spec_licence(dataset: str) -> str:
    if dataset == "fashion":
        return ("Fashion-MNIST is by Han Xiao, Kashif Rasul and Roland Vollgraf (Zalando Research), under the MIT "
                "License; this model was trained on it.")
    return ("MNIST is the work of Yann LeCun, Corinna Cortes and Christopher J.C. Burges, under the Creative Commons "
            "Attribution-Share Alike 3.0 license (CC BY-SA 3.0); this model was trained on it.")


def zip_name(model_id: str) -> str:
    return f"digitlab-{model_id}.zip"


def write_zip(store: ModelStore, model_id: str, folder: Path) -> Path:
    """The model's zip in ``folder`` (made if need be); returns its path."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, payload in files(store, model_id).items():
            z.writestr(f"digitlab-{model_id}/{name}", payload)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / zip_name(model_id)
    tmp = path.with_suffix(".part")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)
    return path


def zip_bytes(store: ModelStore, model_id: str) -> bytes:
    """For a page's download button: the model's zip, made once in a process of its own and kept in the store's
    ``exports/`` folder. Raises ExportError with a message for the page."""
    store.info(model_id)  # StoreError for a model that is not (or no longer) there
    folder = store.root / "exports"
    path = folder / zip_name(model_id)
    if not path.exists() or path.stat().st_mtime < (store.root / f"{model_id}.json").stat().st_mtime:  # renamed since
        try:
            done = subprocess.run([sys.executable, "-m", "digitlab", "export", model_id, "--out", str(folder)],
                                  cwd=ROOT, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S,
                                  env={**os.environ, "DIGITLAB_MODEL_DIR": str(store.root)})
        except subprocess.TimeoutExpired:  # a page's spinner, not a traceback
            raise ExportError(f"writing the zip took over {EXPORT_TIMEOUT_S:g} seconds and was stopped: the "
                              "server is busy; try again in a minute") from None
        if done.returncode or not path.exists():
            said = (done.stderr or done.stdout).strip().splitlines()  # its last line says why ("error: ...")
            raise ExportError(said[-1].removeprefix("error: ")[:300] if said else f"exit status {done.returncode}")
    return path.read_bytes()

