"""The class's one queue for several web processes: a real queue server process, clients as the web processes."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import sys
import time
from multiprocessing import AuthenticationError
from pathlib import Path

import pytest

from digitlab import queue_server
from digitlab.data import DATASETS, DataError, load_mnist
from digitlab.models import PRESETS
from digitlab.queue_server import QueueService, RemoteQueue
from digitlab.runs.interface import JobRefused, TrainingQueue
from digitlab.runs.queue import JobQueue
from digitlab.runs.runners import zygote
from digitlab.ui.text import over_limit_text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from classroom_client import descendants  # noqa: E402


def start_server(tmp_path):
    """A queue server process on a free port of 127.0.0.1: (the process, its address, its key)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    key = secrets.token_hex(16)
    env = {**os.environ, "DIGITLAB_QUEUE_ADDRESS": address, "DIGITLAB_QUEUE_KEY": key,
           "DIGITLAB_MODEL_DIR": str(tmp_path / "models")}
    try:
        return queue_server.start(env, tmp_path / "queue.log"), address, key
    except OSError as e:
        pytest.fail(str(e))


@pytest.fixture()
def server(tmp_path):
    proc, address, key = start_server(tmp_path)
    yield address, key
    proc.terminate()
    proc.wait(timeout=30)


def training_processes(pid: int) -> list[int]:
    """The training processes among ``pid``'s descendants (``runners.zygote.is_training_process``)."""
    return [child for child in descendants(pid) if zygote.is_training_process(child)]


def test_the_queue_and_its_remote_view_implement_one_interface():
    """RemoteQueue serves every method the pages use, explicitly, as JobQueue has them; the service has each too."""
    import inspect

    asked = [name for name in dir(TrainingQueue) if not name.startswith("_")]
    assert {"submit", "warm", "estimate", "over_limit", "snapshot", "active", "cancel", "stop", "pause", "resume", "step",
            "watch"} <= set(asked)
    for name in asked:
        if name == "limit_s":
            continue
        for cls in (JobQueue, RemoteQueue):
            assert inspect.signature(getattr(cls, name)).parameters.keys() == \
                inspect.signature(getattr(TrainingQueue, name)).parameters.keys(), (cls, name)
        assert callable(getattr(QueueService, name)) or name == "submit", name
    assert TrainingQueue in JobQueue.__mro__ and TrainingQueue in RemoteQueue.__mro__  # declared, not duck-typed
    assert not hasattr(RemoteQueue, "__getattr__")


@pytest.mark.slow
def test_a_training_page_on_any_web_process_starts_the_class_s_training_process(tmp_path, mnist):
    """A page's warm() travels from its web process to the queue server, which starts the one training process."""
    proc, address, key = start_server(tmp_path)
    try:
        web = RemoteQueue(address, key)
        assert training_processes(proc.pid) == []
        web.warm(mnist)
        web.warm(mnist)  # a page's every rerun asks; the web process passes on one ask in WARM_EVERY_S
        deadline = time.monotonic() + 60
        while not training_processes(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(training_processes(proc.pid)) == 1 and web.jobs() == []
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_two_web_processes_share_one_line(server, mnist):
    first, second = RemoteQueue(*server), RemoteQueue(*server)  # as two web processes see the queue
    config = PRESETS["simple_net"].with_(epochs=1, train_limit=3000)
    a = first.submit(config, mnist, "ann", limited=True)
    b = second.submit(config, mnist, "bob", limited=True)
    assert b.id == a.id  # identical settings share one run, whichever process the students reached
    assert {s.id for s in second.active()} == {a.id}
    deadline = time.monotonic() + 300
    while not (snap := first.snapshot(a.id)).finished:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert snap.state == "done" and second.snapshot(a.id).model_id == snap.model_id
    # one run waiting per student, across processes: Cy's second run through the other process is refused
    long = PRESETS["simple_net"].with_(epochs=20)
    running = first.submit(long, mnist, "ann", limited=True)  # runs
    first.submit(long.with_(seed=1), mnist, "cy", limited=True)  # waits
    # Ann pauses and steps her run through one process, the pictures and the step show through the other
    while (seen := second.watch(running.id)) is None or seen["watch"] is None:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert len(seen["watch"]["answers"]) == 16
    assert not second.pause(running.id, "cy") and first.pause(running.id, "ann") and second.step(running.id, "ann")
    while not second.watch(running.id)["steps"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert second.snapshot(running.id).paused_by == "starter" and first.resume(running.id, "ann")
    with pytest.raises(JobRefused, match="You already have a run waiting"):
        second.submit(long.with_(seed=2), mnist, "cy", limited=True)
    assert second.estimate(long, 60_000) > 0 and first.over_limit(long, 60_000) is None
    second.limit_s = 1.0  # the teacher's limit, set through one process, holds in the other
    assert first.limit_s == 1.0 and "more than the class's limit" in over_limit_text(first.over_limit(long, 60_000))
    for snap in first.active():
        assert second.cancel(snap.id)


@pytest.mark.slow
def test_a_wrong_key_or_changed_data_is_refused(server, tmp_path):
    address, _ = server
    with pytest.raises(AuthenticationError):
        RemoteQueue(address, "not the key")
    queue = RemoteQueue(*server)
    folder = tmp_path / "data"
    shutil.copytree(DATASETS["mnist"].sample_dir, folder)
    page_data = load_mnist(folder, allow_download=False)  # what the page loaded...
    for f in DATASETS["fashion"].sample_dir.glob("*.gz"):  # ...before someone put other files in its folder
        shutil.copy(f, folder / f.name)
    queue.warm(page_data)  # the page opening with that data is not refused: warming is only a head start
    with pytest.raises(DataError, match="the data on disk changed"):
        queue.submit(PRESETS["simple_net"].with_(epochs=1), page_data, "ann")
