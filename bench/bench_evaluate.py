"""How long the Evaluate page's heavy steps take, per stored model (run by hand; not a test).

    DIGITLAB_DATA_DIR=../shared/mnist DIGITLAB_MODEL_DIR=models python bench/bench_evaluate.py
"""

from __future__ import annotations

import time

import torch

from digitlab import evaluate as ev
from digitlab.data import load_mnist
from digitlab.store import ModelStore
from digitlab.train import device_label


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def main() -> None:
    data = load_mnist(allow_download=False)
    print(f"device {device_label()}, torch threads {torch.get_num_threads()}, data {data.source.label}")
    for info in ModelStore().list():
        model, info = ModelStore().load(info.id)
        cfg = info.config
        pred, t_pred = timed(ev.predict, model, cfg, data)
        _, t_rob = timed(ev.robustness, model, cfg, data, 1000)
        layers = ev.embedding_layers(model)
        t_pca = sum(timed(ev.embedding, model, cfg, data, layer, "pca", 1000)[1] for layer in layers)
        _, t_tsne = timed(ev.embedding, model, cfg, data, layers[-1], "tsne", 1000)
        print(f"{info.config.title:<24} {len(pred.targets):>6,} test images, accuracy {pred.accuracy:.2%} | "
              f"predict {t_pred:.2f}s | robustness (1,000 images x 25 changes) {t_rob:.2f}s | "
              f"PCA of {len(layers)} layers (1,000 points) {t_pca:.2f}s | t-SNE (1,000 points) {t_tsne:.2f}s")


if __name__ == "__main__":
    main()
