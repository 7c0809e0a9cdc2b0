"""A model store as a class leaves it after a lesson: about twenty real runs, small and quick to train here, among
them duplicates of one recipe, settings that differ, a CNN or two and one broken run (below 50%). Used by the
browser test of many models and by scripts/screenshot.py; train_in_process trains the tests' other models."""

from __future__ import annotations

import shutil
from pathlib import Path

from digitlab.models import PRESETS

RUNS = [  # every one trained for real; small subsets keep the whole class under a minute here
    PRESETS["linear-better"].with_(epochs=1),
    PRESETS["linear-better"].with_(epochs=2, seed=7),
    PRESETS["linear-seed"].with_(epochs=2),
    *[PRESETS["simple_net"].with_(epochs=1, lr=lr, train_limit=3000) for lr in (0.03, 0.1, 0.3, 1.0)],
    *[PRESETS["simple_net"].with_(epochs=1, seed=s, train_limit=3000) for s in (1, 2)],  # the same recipe again
    PRESETS["simple_net"].with_(epochs=1, batch_size=64, train_limit=3000),
    PRESETS["simple_net"].with_(epochs=1, batch_size=1024, train_limit=3000),
    PRESETS["simple_net"].with_(preset="custom", hidden=(100,), epochs=1, train_limit=3000),
    PRESETS["mlp-128-64"].with_(epochs=1, train_limit=3000),
    PRESETS["mlp-128-64"].with_(epochs=2, train_limit=3000),
    PRESETS["cnn-fast"].with_(train_limit=3000),
    PRESETS["linear-seed"].with_(epochs=1),
    # The broken run: a rate far too small on a sliver of the data. It barely moved from its random start.
    PRESETS["simple_net"].with_(epochs=1, lr=0.001, train_limit=512),
]


def train_in_process(store, data, configs: list, timeout: float = 900) -> list[str]:
    """Each config trained through the real queue on the in-process runner (the training process has tests of its
    own), one after another; the ids of the runs that finished. The timeout guards against a hang."""
    from functools import partial

    from digitlab.runs.queue import JobQueue
    from digitlab.runs.runners.inline import InlineRunner

    queue = JobQueue(store, runner=partial(InlineRunner, publish=False, analyse="none"))
    try:
        jobs = [queue.submit(config, data, owner="") for config in configs]
        done = [queue.wait(job.id, timeout=timeout) for job in jobs]
    finally:
        queue.close()
    return [s.model_id for s in done if s is not None and s.state == "done"]


def classroom_store(root: Path, data, copy_from: Path | None = None) -> list[str]:
    """Fill ``root`` with the models of ``copy_from`` (the test session's trained ones) and every run of RUNS,
    trained through the real queue; the ids of the runs that finished."""
    from digitlab.store import ModelStore

    root.mkdir(parents=True, exist_ok=True)
    if copy_from is not None:
        for path in copy_from.glob("*"):
            if path.is_file():
                shutil.copy2(path, root / path.name)
    return train_in_process(ModelStore(root), data, RUNS)


if __name__ == "__main__":  # python tests/classroom.py FOLDER [COPY_FROM]
    import sys

    from digitlab.data import load_mnist

    ids = classroom_store(Path(sys.argv[1]), load_mnist(allow_download=False),
                          Path(sys.argv[2]) if len(sys.argv) > 2 else None)
    print(len(ids), "runs trained")
