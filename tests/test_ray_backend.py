"""Training on a real Ray cluster started here: a head on 127.0.0.1 (no dashboard), two workers."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from digitlab.models import PRESETS
from digitlab.store import ModelStore
from digitlab.worker import run_job


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster():
    # Ray's token authentication: the head and this client share a secret made for this test run (set before
    # ray is imported: it reads them then)
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    import ray

    temp = Path(tempfile.mkdtemp(prefix="digitlab-ray-"))
    port = _free_port()
    ray_bin = Path(sys.executable).with_name("ray")
    started = subprocess.run([str(ray_bin), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                              "--num-cpus=2", "--include-dashboard=false", f"--temp-dir={temp}", "--disable-usage-stats"],
                             capture_output=True, text=True, timeout=180, env=os.environ)
    if started.returncode:
        pytest.fail(f"the Ray head could not be started on 127.0.0.1:{port}: {started.stderr[-2000:]}")
    ray.init(address=f"127.0.0.1:{port}", logging_level="ERROR")
    yield ray
    ray.shutdown()
    subprocess.run([str(ray_bin), "stop", "--force"], capture_output=True, timeout=120)
    shutil.rmtree(temp, ignore_errors=True)


def _spec(config, mnist, store: Path, job: str) -> dict:
    return {"job": job, "config": config.to_dict(), "continue_from": "", "data_dir": mnist.source.path,
            "fingerprint": mnist.fingerprint(), "store": str(store)}


def test_a_run_on_ray_streams_progress_and_stores_the_model_on_the_web_side(ray_cluster, mnist, tmp_path):
    from digitlab.ray_backend import run_on_ray

    config = PRESETS["simple_net"].with_(epochs=2, train_limit=5000)
    web_store = tmp_path / "web-models"
    messages = []
    finished = run_on_ray(_spec(config, mnist, web_store, "ray-1"), mnist, messages.append, threading.Event(),
                          web_store)
    assert finished["state"] == "done", finished
    kinds = [m["type"] for m in messages]
    assert kinds.count("epoch") == 2 and "progress" in kinds
    model, info = ModelStore(web_store).load(finished["model_id"])  # the weights came back as bytes
    # the same job in the embedded worker: the same accuracy within 0.1 points
    local = run_job(_spec(config, mnist, tmp_path / "local", "local-1"), lambda m: None, threading.Event(),
                    {mnist.source.path: mnist})
    local_info = ModelStore(tmp_path / "local").info(local["model_id"])
    assert abs(info.metrics["test_accuracy"] - local_info.metrics["test_accuracy"]) <= 0.001
