"""The class's training queue: worker processes, a fair line, runs that depend only on their config."""

import json
import os
import signal
import threading
import time

import pytest
from digitlab.jobs import JobQueue, JobRefused
from safetensors.torch import load_file
from streamlit.testing.v1 import AppTest

from digitlab import jobs
from digitlab.models import PRESETS
from digitlab.train import task_size

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
        while not queue.snapshot(first.id).finished:
            page.run()  # the pages' own random numbers, drawn while the run trains
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

        nxt = queue.wait(queue.submit(SMALL_MLP.with_(seed=3), mnist, owner="a").id, timeout=120)
        assert nxt.state == "done", nxt.error
        assert queue.worker_pids() != [pid]
    finally:
        queue.close()
    assert {i.id for i in store.list()} == {kept.model_id, nxt.model_id}


def test_one_waiting_run_per_student_with_place_and_start_estimate(mnist, store):
    queue = JobQueue(store)
    try:
        running = queue.submit(LONG_CNN, mnist, owner="a")
        started_running(queue, running.id)
        waiting = queue.submit(SMALL_MLP, mnist, owner="b")
        assert waiting.state == "queued" and waiting.position == 1
        assert "number 1 in line, starts in about" in waiting.message
        assert waiting.eta_start > time.time()
        with pytest.raises(JobRefused, match="already have a run waiting"):
            queue.submit(SMALL_MLP.with_(seed=2), mnist, owner="b")
        # the same run as someone else's is shared, not refused
        assert queue.submit(SMALL_MLP, mnist, owner="c").id == waiting.id
        third = queue.submit(SMALL_MLP.with_(seed=5), mnist, owner="c")
        assert third.position == 2 and third.eta_start >= waiting.eta_start

        # cancelling wakes whoever waits on the job, at once
        woke = {}
        waiter = threading.Thread(target=lambda: woke.setdefault("snap", queue.wait(third.id, timeout=60)))
        waiter.start()
        time.sleep(0.2)
        assert queue.cancel(third.id, owner="c")
        waiter.join(timeout=5)
        assert woke["snap"].state == "cancelled"
        assert queue.cancel(running.id, owner="a")
        assert queue.wait(running.id, timeout=120).state in ("cancelled", "done")
    finally:
        queue.close()


def test_finished_jobs_are_pruned_and_ids_never_come_back(mnist, store, monkeypatch):
    monkeypatch.setattr(jobs, "KEEP_FINISHED", 3)
    queue = JobQueue(store)
    try:
        done = queue.wait(queue.submit(SMALL_MLP, mnist, owner="a").id, timeout=120)
        ids = [queue.submit(SMALL_MLP, mnist, owner=f"s{n}").id for n in range(6)]  # each answered from the store
        assert len(queue.jobs()) == 3 and queue.snapshot(done.id) is None
        assert len(set(ids) | {done.id}) == 7
        other = JobQueue(store)  # a queue made later (a restarted server) names its jobs afresh
        assert other.submit(SMALL_MLP, mnist, owner="z").id not in ids + [done.id]
    finally:
        queue.close()


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
        assert any(line.startswith(f"· {LONG_CNN.title} — ") for line in lines)
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
    queue = jobs.shared_queue(store)
    try:
        assert queue.max_running == 1
        snap = queue.wait(queue.submit(SMALL_MLP, mnist, owner="a").id, timeout=120)
        assert snap.state == "done", snap.error
    finally:
        queue.close()


# ---------------------------------------------------------------- limits, Stop, the teacher (issue 15)

HOG = PRESETS["cnn-seed"].with_(batch_size=1, epochs=100)  # set through the CNN page's own widgets: about 23 hours


def test_a_hog_run_is_refused_with_its_estimate_and_what_to_change(mnist, store):
    queue = JobQueue(store, limit_s=300)
    try:
        seconds = queue.estimate(HOG, task_size(mnist, HOG))  # the images it trains on
        per_epoch = seconds / HOG.epochs
        with pytest.raises(JobRefused) as refused:
            queue.submit(HOG, mnist, owner="a", limited=True)
        said = str(refused.value)
        assert f"would take about {jobs.duration_text(seconds)} on this server" in said
        assert "more than the class's limit of 5 min 00 s" in said
        # what to change, from the same estimates: one epoch of a batch of 1 alone is over the limit
        assert per_epoch > 300 and "Try a batch size of 64 with at most" in said
        at_64 = queue.estimate(HOG.with_(batch_size=64, epochs=1), task_size(mnist, HOG))
        assert f"a batch size of 64 with at most {int(300 // at_64)} epoch(s)." in said
        assert queue.jobs() == []  # nothing queued, nobody waits behind it
        # a batch of 1 pays the fixed cost of a step 60,000 times an epoch: far slower than the preset's 64
        assert seconds > 10 * queue.estimate(HOG.with_(batch_size=64), task_size(mnist, HOG))
        ok = queue.submit(SMALL_MLP, mnist, owner="a", limited=True)  # within the limit: queued as ever
        assert queue.wait(ok.id, timeout=120).state == "done"
    finally:
        queue.close()


def test_stop_detaches_a_student_and_cancels_only_when_nobody_else_waits(mnist, store):
    queue = JobQueue(store)
    try:
        run = queue.submit(LONG_CNN, mnist, owner="a")
        joined = queue.submit(LONG_CNN, mnist, owner="b")  # a second student asks for the same run: shared
        assert joined.id == run.id and set(queue.snapshot(run.id).watchers) == {"a", "b"}
        started_running(queue, run.id)
        assert queue.stop(run.id, "a") == "detached"
        snap = queue.snapshot(run.id)
        assert snap.state == "running" and snap.watchers == ("b",)
        assert queue.stop(run.id, "a") == ""  # no longer waiting on it: nothing to stop
        assert queue.stop(run.id, "b") == "cancelled"
        assert queue.wait(run.id, timeout=120).state == "cancelled"
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


def test_the_teacher_key_is_needed_and_none_set_means_nobody(monkeypatch):
    monkeypatch.delenv("DIGITLAB_TEACHER_KEY", raising=False)
    assert not jobs.teacher_key_set() and not jobs.teacher_key_ok("") and not jobs.teacher_key_ok("anything")
    monkeypatch.setenv("DIGITLAB_TEACHER_KEY", "correct horse battery staple")
    assert jobs.teacher_key_ok("correct horse battery staple")
    assert not jobs.teacher_key_ok("correct horse battery") and not jobs.teacher_key_ok("")


def test_an_unwritable_model_folder_refuses_the_run_before_it_is_queued(mnist, tmp_path):
    from digitlab.store import ModelStore

    (tmp_path / "a-file").write_text("not a folder")
    queue = JobQueue(ModelStore(tmp_path / "a-file" / "models"))
    try:
        with pytest.raises(JobRefused, match="the model folder .* cannot be written"):
            queue.submit(SMALL_MLP, mnist, owner="a")
        assert queue.jobs() == [] and queue.worker_pids() == []
    finally:
        queue.close()


def test_memory_comes_back_an_idle_or_grown_training_process_is_replaced(mnist, store, monkeypatch):
    """What a worker allocated outside Python (kernels per batch shape) goes back: it ends when idle, and is
    replaced between runs once it has grown past the limit (here 0 MB, so after every run but its first)."""
    monkeypatch.setattr(jobs, "WORKER_GROWTH_MB", -1.0)
    queue = JobQueue(store)
    try:
        assert queue.wait(queue.submit(SMALL_MLP.with_(seed=21), mnist, owner="a").id, timeout=120).state == "done"
        (first,) = queue.worker_pids()  # its first run sets the baseline: kept
        assert queue.wait(queue.submit(SMALL_MLP.with_(seed=22), mnist, owner="a").id, timeout=120).state == "done"
        deadline = time.monotonic() + 60
        while first in queue.worker_pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert first not in queue.worker_pids()  # grown: ended between runs
        monkeypatch.setattr(jobs, "WORKER_IDLE_S", 0.5)
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
        assert second["batch_of_run"] == first["batch_of_run"] + 1 and first["batch_size"] == SMALL_MLP.batch_size
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
    the run. Unused, it goes after the idle time and is not started again until a page asks again."""
    queue = JobQueue(store)
    try:
        queue.warm(mnist)
        deadline = time.monotonic() + 60
        while not queue.worker_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        (pid,) = queue.worker_pids()
        assert queue.jobs() == []  # a process, and no run
        monkeypatch.setattr(jobs, "WORKER_IDLE_S", 0.5)
        assert queue.wait(queue.submit(SMALL_MLP.with_(seed=31), mnist, owner="a").id, timeout=120).state == "done"
        assert queue.worker_pids() == [pid]  # the warm process trained it: no second start
        deadline = time.monotonic() + 60
        while queue.worker_pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert queue.worker_pids() == []  # idle, and nobody asking: it went
        time.sleep(1.5)
        assert queue.worker_pids() == []  # the old ask does not start it again
        queue.warm(mnist)
        deadline = time.monotonic() + 60
        while not queue.worker_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert queue.worker_pids() and queue.worker_pids() != [pid]
    finally:
        queue.close()
