"""The queue with its default runner, real training processes (``python -m digitlab.runs.worker``): runs that depend
only on their config, a dead process that fails only its run, the process's compute time, the sidebar, the
settings, steering over the command lines, the process started ahead of a run and ended when idle or grown.
The queue's rules themselves are tested fast, in this process, in test_queue.py."""

import json
import math
import os
import signal
import time

import pytest
from safetensors.torch import load_file
from streamlit.testing.v1 import AppTest
from test_memory import gpu_code_kb

from digitlab.models import PRESETS
from digitlab.runs.queue import JobQueue
from digitlab.runs.runners import process
from digitlab.runs.shared import shared_queue

pytestmark = pytest.mark.slow  # training processes started and waited for: the slower set

# DigitCNN with batch norm and dropout: every kind of randomness a run has (init, shuffle, dropout)
WITH_DROPOUT = PRESETS["cnn-best"].with_(epochs=1, train_limit=1_500, augment=False, schedule="constant")
SMALL_MLP = PRESETS["simple_net"].with_(epochs=1, train_limit=4_000)
LONG_CNN = PRESETS["cnn-seed"].with_(epochs=30, train_limit=20_000)


def weights(store, model_id):
    return load_file(store.root / f"{model_id}.safetensors")


def started_running(queue, job_id, training=False):
    """Wait until the worker has taken the job (and, with ``training``, reported a batch)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        snap = queue.snapshot(job_id)
        if snap.state == "running" and (snap.last is not None or not training):
            return snap
        time.sleep(0.05)
    raise AssertionError(f"{job_id} never started: {queue.snapshot(job_id)}")


def test_identical_configs_give_identical_weights_whatever_else_runs(mnist, store):
    """Two runs of one config, each beside a different run and with pages rerunning meanwhile: bit for bit."""
    queue = JobQueue(store, max_running=2)
    try:
        first = queue.submit(WITH_DROPOUT, mnist, owner="a")
        queue.submit(SMALL_MLP, mnist, owner="b")
        page = AppTest.from_file("../pages/2_Linear_3_vs_7.py", default_timeout=120)
        for _ in range(3):  # the pages' own random numbers, drawn while the run trains (a few reruns: each costs
            if queue.snapshot(first.id).finished:  # the CPU the runs train on, on a 2-core machine)
                break
            page.run()
            assert not page.exception
        first = queue.wait(first.id, timeout=300)
        assert first.state == "done", first.error
        before = weights(store, first.model_id)
        store.delete(first.model_id)

        again = queue.submit(WITH_DROPOUT, mnist, owner="a")
        other = queue.submit(SMALL_MLP.with_(batch_size=128, seed=7), mnist, owner="c")
        assert not again.reused
        again = queue.wait(again.id, timeout=300)
        assert again.state == "done", again.error
        assert queue.wait(other.id, timeout=300).state == "done"
        after = weights(store, again.model_id)
    finally:
        queue.close()
    assert before.keys() == after.keys()
    for name in before:
        assert before[name].dtype == after[name].dtype and before[name].equal(after[name]), name


def test_a_dead_worker_fails_its_job_and_the_queue_goes_on(mnist, store):
    queue = JobQueue(store)
    try:
        kept = queue.wait(queue.submit(SMALL_MLP, mnist, owner="a").id, timeout=120)
        assert kept.state == "done", kept.error
        doomed = queue.submit(LONG_CNN, mnist, owner="b")
        started_running(queue, doomed.id, training=True)
        (pid,) = queue.worker_pids()
        os.kill(pid, signal.SIGKILL)  # what the kernel's out-of-memory killer does
        failed = queue.wait(doomed.id, timeout=60)
        assert failed.state == "failed"
        assert "killed by signal 9" in failed.error and "nothing else was lost" in failed.error
        assert failed.message == failed.error

        nxt = queue.wait(queue.submit(SMALL_MLP.with_(seed=3), mnist, owner="a").id, timeout=120)
        assert nxt.state == "done", nxt.error
        assert queue.worker_pids() != [pid]
    finally:
        queue.close()
    assert {i.id for i in store.list()} == {kept.model_id, nxt.model_id}


def test_a_run_records_the_workers_compute_time(mnist, store):
    queue = JobQueue(store)
    try:
        snap = queue.wait(queue.submit(SMALL_MLP, mnist, owner="a").id, timeout=120)
    finally:
        queue.close()
    info = store.info(snap.model_id)
    record = json.loads((store.root / f"{snap.model_id}.json").read_text())
    # the time kept with the model is the worker's compute, never more than the wall clock it took
    assert 0 < info.train_seconds <= snap.compute_seconds
    assert info.train_seconds <= record["wall_seconds"] + 0.05
    assert info.history[-1]["seconds"] == pytest.approx(info.train_seconds, abs=0.2)


def test_the_robustness_curves_are_worked_out_while_the_training_process_is_idle(mnist, store, monkeypatch):
    """The default (DIGITLAB_ANALYSE_AHEAD on): after a run, its costly analysis is made in the process's lull, so
    that Evaluate's robustness section finds it ready."""
    from digitlab import analysis

    monkeypatch.setenv("DIGITLAB_ANALYSE_AHEAD", "1")  # the suite turns it off (conftest): it is on for a class
    queue = JobQueue(store)
    try:
        snap = queue.wait(queue.submit(SMALL_MLP.with_(seed=21), mnist, owner="a").id, timeout=120)
        assert snap.state == "done", snap.error
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            found = analysis.load(store, snap.model_id, mnist)
            if found is not None and found.robustness(analysis.ROBUST_N) is not None:
                break
            time.sleep(0.2)  # a real process working in its own time
        else:
            raise AssertionError("no robustness curves 120 s after the run, in an idle training process")
    finally:
        queue.close()


def test_the_sidebar_says_what_trains_and_clears_when_it_ends(mnist):
    """Every page's sidebar lists the class's running and waiting runs, with a start estimate, and nothing after."""
    from digitlab import ui

    page = AppTest.from_file("../pages/1_Data_Explorer.py", default_timeout=120)
    queue = ui.get_queue()
    running = queue.submit(LONG_CNN.with_(seed=11), mnist, owner="teacher")
    started_running(queue, running.id)
    waiting = queue.submit(SMALL_MLP.with_(seed=12), mnist, owner="student")
    try:
        page.run()
        lines = [c.value for c in page.sidebar.caption]
        assert "**Training now:**" in lines
        assert any(line.startswith(f"· {LONG_CNN.title} (started by a student) — ") for line in lines)  # whose
        assert any("and 1 more waiting; the next starts in about" in line for line in lines)
    finally:
        queue.cancel(waiting.id)
        queue.cancel(running.id)
    assert queue.wait(running.id, timeout=120).finished
    page.run()
    assert not page.exception
    assert not [c.value for c in page.sidebar.caption if "Training now" in c.value]


def test_unreadable_worker_settings_fall_back_to_the_defaults(mnist, store, monkeypatch):
    monkeypatch.setenv("DIGITLAB_WORKER_THREADS", "many")
    monkeypatch.setenv("DIGITLAB_WORKER_NICE", "low")
    monkeypatch.setenv("DIGITLAB_MAX_TRAINING", "two")
    queue = shared_queue(store)
    try:
        assert queue.max_running == 1
        snap = queue.wait(queue.submit(SMALL_MLP, mnist, owner="a").id, timeout=120)
        assert snap.state == "done", snap.error
    finally:
        queue.close()


def test_the_teacher_pauses_and_resumes_any_run(mnist, store):
    queue = JobQueue(store)
    try:
        run = queue.submit(SMALL_MLP.with_(epochs=20, seed=8), mnist, owner="a")  # long enough not to end first
        started_running(queue, run.id, training=True)
        assert queue.pause(run.id)
        held, deadline = queue.snapshot(run.id), time.monotonic() + 60
        while time.monotonic() < deadline:  # the worker holds at its next batch: its reports stop
            time.sleep(0.5)
            now = queue.snapshot(run.id)
            if now.version == held.version:
                break
            held = now
        time.sleep(1.0)
        still = queue.snapshot(run.id)
        assert still.paused and still.message == "paused by the teacher"
        assert still.version == held.version and still.progress < 1 and still.state == "running"
        assert queue.resume(run.id)
        done = queue.wait(run.id, timeout=120)
        assert done.state == "done" and len(done.history) == 20
    finally:
        queue.close()


def test_memory_comes_back_an_idle_or_grown_training_process_is_replaced(mnist, store, monkeypatch):
    """What a worker allocated outside Python (kernels per batch shape) goes back: it ends when idle, and is
    replaced between runs once it has grown past the limit (here 0 MB, so after every run but its first)."""
    monkeypatch.setattr(process, "WORKER_GROWTH_MB", -math.inf)  # any size counts as grown (RSS may also shrink)
    queue = JobQueue(store)
    try:
        assert queue.wait(queue.submit(SMALL_MLP.with_(seed=21), mnist, owner="a").id, timeout=120).state == "done"
        (first,) = queue.worker_pids()  # its first run sets the baseline: kept
        assert gpu_code_kb(first) < 1024  # the CUDA code torch loads, handed back (digitlab.memory), trained without
        assert queue.wait(queue.submit(SMALL_MLP.with_(seed=22), mnist, owner="a").id, timeout=120).state == "done"
        deadline = time.monotonic() + 60
        while first in queue.worker_pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert first not in queue.worker_pids()  # grown: ended between runs
        monkeypatch.setattr(process, "WORKER_IDLE_S", 0.5)
        snap = queue.wait(queue.submit(SMALL_MLP.with_(seed=23), mnist, owner="a").id, timeout=120)
        assert snap.state == "done", snap.error  # a fresh process took the next run
        deadline = time.monotonic() + 60
        while queue.worker_pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert queue.worker_pids() == []  # idle: no training process holds memory
        assert queue.wait(queue.submit(SMALL_MLP.with_(seed=24), mnist, owner="a").id, timeout=120).state == "done"
    finally:
        queue.close()


def test_the_starter_pauses_and_steps_a_shared_run_one_batch_at_a_time(mnist, store):
    """Pause, one batch per Step (its loss, accuracy and weight change reported), Resume; on a run two students share,
    only the one who started it steers it, and a student cannot resume the teacher's pause."""
    from digitlab.live import unpack

    queue = JobQueue(store)
    try:
        run = queue.submit(SMALL_MLP.with_(epochs=20, seed=12), mnist, owner="starter")
        assert queue.submit(SMALL_MLP.with_(epochs=20, seed=12), mnist, owner="joiner").id == run.id
        started_running(queue, run.id, training=True)
        assert not queue.pause(run.id, "joiner") and not queue.snapshot(run.id).paused  # joined: watches only
        assert queue.pause(run.id, "starter")
        paused = queue.snapshot(run.id)
        assert paused.paused_by == "starter" and paused.message.startswith("paused by the student who started it")
        assert not queue.step(run.id, "joiner") and not queue.resume(run.id, "joiner")
        for n in (1, 2):
            assert queue.step(run.id, "starter")
            _wait_for(lambda n=n: len(queue.watch(run.id)["steps"]) == n, f"step {n}")
        first, second = queue.watch(run.id)["steps"]
        # (a full batch, or an epoch's last: 4,000 images make 15 of 256 and one of 160, where a pause lands 1 in 16)
        whole_or_last = (SMALL_MLP.batch_size, SMALL_MLP.train_limit % SMALL_MLP.batch_size)
        assert second["batch_of_run"] == first["batch_of_run"] + 1 and first["batch_size"] in whole_or_last
        assert 0 < second["loss"] < 5 and second["loss"] != first["loss"] and 0 <= second["accuracy"] <= 1
        moved = {row["weights"]: row["moved"] for row in second["layers"]}
        assert all(m > 0 for m in moved.values()) and len(moved) == 4  # both layers' weights and biases moved
        before, after = unpack(second["before"]), unpack(second["after"])
        assert before.shape == after.shape == (16, 28, 28) and (before != after).any()
        shown = queue.watch(run.id)["watch"]  # the pictures after the step: its answers on the 16 test digits
        assert len(shown["answers"]) == 16 and unpack(shown["maps"]).shape == (16, 28, 28)
        held = queue.snapshot(run.id).progress
        time.sleep(1.0)
        assert queue.snapshot(run.id).progress == held and len(queue.watch(run.id)["steps"]) == 2  # still held

        assert queue.resume(run.id, "starter") and not queue.snapshot(run.id).paused
        assert queue.pause(run.id)  # the teacher's pause: the starter cannot undo it, the teacher can
        assert not queue.resume(run.id, "starter") and not queue.step(run.id, "starter")
        assert queue.resume(run.id)
        assert queue.stop(run.id, "starter") == "detached"  # no longer following: no longer steering
        assert not queue.pause(run.id, "starter")
        queue.cancel(run.id)
    finally:
        queue.close()


def _wait_for(check, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_page_that_asks_for_a_warm_process_gets_one_and_the_next_run_trains_in_it(mnist, store, monkeypatch):
    """warm() starts the training process, with the dataset read, before anyone presses Train; that process takes
    the run. Unused, it goes after the idle time and is not started again until a page asks again. The first one
    leaves torch's compiler stack to the first run (a class browsing a server just started holds 70 MB less); once
    runs have come, a process started ahead has it, so no later run waits for it."""
    queue = JobQueue(store)
    try:
        queue.warm(mnist)
        deadline = time.monotonic() + 60
        while not queue.worker_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        (pid,) = queue.worker_pids()
        assert queue.jobs() == []  # a process, and no run
        lean = _settled_rss(pid)
        monkeypatch.setattr(process, "WORKER_IDLE_S", 0.5)
        assert queue.wait(queue.submit(SMALL_MLP.with_(seed=31), mnist, owner="a").id, timeout=120).state == "done"
        assert queue.worker_pids() == [pid]  # the warm process trained it: no second start
        deadline = time.monotonic() + 60
        while queue.worker_pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert queue.worker_pids() == []  # idle, and nobody asking: it went
        time.sleep(1.5)
        assert queue.worker_pids() == []  # the old ask does not start it again
        monkeypatch.setattr(process, "WORKER_IDLE_S", 120.0)  # (kept while its memory is read)
        queue.warm(mnist)
        deadline = time.monotonic() + 60
        while not queue.worker_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert queue.worker_pids() and queue.worker_pids() != [pid]
        assert _settled_rss(queue.worker_pids()[0]) > lean + 40  # (MB) the compiler stack, ready for the next run
    finally:
        queue.close()


def _settled_rss(pid: int) -> float:
    """A process's RSS in MB once it stops changing (its start done)."""
    last, deadline = None, time.monotonic() + 30
    while time.monotonic() < deadline:
        now = process.rss_mb(pid)
        assert now is not None, f"the training process {pid} has gone"
        if last is not None and abs(now - last) < 2:
            return now
        last = now
        time.sleep(0.5)
    return last


SERVER_STAND_IN = """
import sys, time
from digitlab.data import load_mnist
from digitlab.models import PRESETS
from digitlab.runs.queue import JobQueue
from digitlab.store import ModelStore

queue = JobQueue(ModelStore(sys.argv[1]))
snap = queue.submit(PRESETS["cnn-seed"].with_(epochs=30, train_limit=20_000), load_mnist(allow_download=False), "a")
while (s := queue.snapshot(snap.id)).last is None:  # training: a batch reported
    time.sleep(0.05)
if sys.argv[2] == "paused":
    assert queue.pause(snap.id, "a")  # a student's pause: its 5-minute timer lives in this process
print("ready", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("state", ["paused", "training"])
def test_a_training_process_ends_with_its_server(tmp_path, state, mnist):
    """kill -9 of the server with a run paused or training: its training process lived on (a paused one 442 s later,
    holding 1 GB; issue 29). It now sees its commands end, stops the run and goes within seconds."""
    import subprocess
    import sys

    server = subprocess.Popen([sys.executable, "-c", SERVER_STAND_IN, str(tmp_path / "models"), state],
                              stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    try:
        assert server.stdout.readline().strip() == "ready"
        workers = [int(p) for task in os.listdir(f"/proc/{server.pid}/task")  # any of its threads may have started it
                   for p in open(f"/proc/{server.pid}/task/{task}/children").read().split()]
        assert len(workers) == 1
        server.kill()
        server.wait(30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and os.path.exists(f"/proc/{workers[0]}"):
            time.sleep(0.1)
        try:
            alive = "zombie" not in open(f"/proc/{workers[0]}/status").read()
        except FileNotFoundError:
            alive = False
        assert not alive, f"the training process {workers[0]} outlived its server by 10 s"
    finally:
        server.kill()
