"""Training on a real Ray cluster started here: a head on 127.0.0.1 (no dashboard), two workers."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import local_ray  # noqa: E402
from localhost import free_port  # noqa: E402

from digitlab.models import PRESETS  # noqa: E402
from digitlab.runs.execute import run_job  # noqa: E402
from digitlab.runs.spec import EpochDone, JobSpec, Progress  # noqa: E402
from digitlab.runs.steering import Steering  # noqa: E402
from digitlab.store import ModelStore  # noqa: E402

pytestmark = pytest.mark.slow  # a Ray cluster started here


@pytest.fixture(scope="module")
def ray_folder():
    """The module's cluster's files (its processes are found by it)."""
    temp = Path(tempfile.mkdtemp(prefix="digitlab-ray-"))
    yield temp
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_cluster(ray_folder):
    # A head on 127.0.0.1 with two CPUs (two runs at once), with Ray's token authentication: the token is set in
    # this process before ray is imported (it reads it then)
    temp = ray_folder
    try:
        joined = local_ray.start(temp, free_port(), nodes=1, cpus=2)
    except local_ray.RayError as e:
        pytest.fail(f"the Ray cluster could not be started: {e}")
    import ray

    ray.init(address=joined["DIGITLAB_RAY_ADDRESS"], logging_level="ERROR")
    yield ray
    ray.shutdown()
    local_ray.stop(temp)


def _spec(config, mnist, store: Path, job: str) -> JobSpec:
    return JobSpec.of(job, config, mnist, store)


def test_a_run_on_ray_streams_progress_and_stores_the_model_on_the_web_side(ray_cluster, mnist, tmp_path):
    from digitlab.runs.runners.ray_task import run_on_ray

    config = PRESETS["simple_net"].with_(epochs=2, train_limit=5000)
    web_store = tmp_path / "web-models"
    messages = []
    web_store.mkdir()
    finished = run_on_ray(_spec(config, mnist, web_store, "ray-1"), mnist, messages.append, Steering())
    assert finished.state == "done", finished
    assert messages[-1] == finished  # the one Finished, the last word
    assert sum(isinstance(m, EpochDone) for m in messages) == 2 and any(isinstance(m, Progress) for m in messages)
    model, info = ModelStore(web_store).load(finished.model_id)  # the weights came back as bytes
    assert list((web_store / "analyses").glob(f"{finished.model_id}*"))  # and its analysis, after "done"
    # the same job in the embedded worker: the same accuracy within 0.1 points
    local = run_job(_spec(config, mnist, tmp_path / "local", "local-1"), mnist, Steering(), lambda m: None)
    local_info = ModelStore(tmp_path / "local").info(local.model_id)
    assert abs(info.metrics["test_accuracy"] - local_info.metrics["test_accuracy"]) <= 0.001


def test_the_queue_on_ray_trains_pauses_stops_and_survives_a_lost_worker(ray_cluster, ray_folder, mnist, tmp_path):
    from digitlab.runs.queue import JobQueue
    from digitlab.runs.runners.ray_runner import RayRunner

    address = ray_cluster.get_runtime_context().gcs_address
    queue = JobQueue(ModelStore(tmp_path / "models"), max_running=2, runner=lambda: RayRunner(address))
    try:
        small = PRESETS["simple_net"].with_(epochs=1, train_limit=3000)
        a, b = queue.submit(small, mnist, owner="ann"), queue.submit(small.with_(seed=7), mnist, owner="bob")
        for snap in (queue.wait(a.id, timeout=300), queue.wait(b.id, timeout=300)):
            assert snap.state == "done", snap.error
            assert ModelStore(tmp_path / "models").info(snap.model_id).config.train_limit == 3000

        long = PRESETS["simple_net"].with_(epochs=30)  # the teacher pauses it, resumes it, then stops it
        run = queue.submit(long, mnist, owner="cy")
        _until(lambda: queue.snapshot(run.id).history, "the first epoch")
        assert queue.pause(run.id)
        time.sleep(2)  # the pause reaches the task within about half a second
        held = queue.snapshot(run.id).version
        time.sleep(3)
        assert queue.snapshot(run.id).version == held and queue.snapshot(run.id).state == "running"  # nothing moves
        assert queue.step(run.id)  # one batch, asked through the flags actor, and what it changed comes back
        _until(lambda: queue.watch(run.id)["steps"], "a single step")
        assert queue.watch(run.id)["watch"]["answers"] and queue.snapshot(run.id).paused
        assert queue.resume(run.id)
        _until(lambda: queue.snapshot(run.id).version > held, "progress after resume")
        assert queue.cancel(run.id)
        done = queue.wait(run.id, timeout=120)
        assert done.state == "cancelled" and done.model_id  # the finished epochs are kept

        lost = queue.submit(long.with_(seed=3), mnist, owner="dee")
        _until(lambda: queue.snapshot(lost.id).state == "running" and queue.snapshot(lost.id).version > 2, "a start")
        # the Ray worker dies mid-run: this cluster's only (a pkill of every "ray::train_task" here killed the run of
        # the test beside it, on a cluster of its own, and failed that test in CI)
        assert local_ray.kill_tasks(ray_folder, "train_task")
        failed = queue.wait(lost.id, timeout=120)
        assert failed.state == "failed" and "Ray worker running this job was lost" in failed.message
        again = queue.wait(queue.submit(small.with_(seed=11), mnist, owner="dee").id, timeout=300)
        assert again.state == "done"  # the cluster takes the next job
    finally:
        queue.close()


def test_the_cluster_refuses_a_server_without_its_token_and_the_run_says_so(ray_cluster, mnist, tmp_path,
                                                                           monkeypatch):
    """Ray listens on every interface whatever --node-ip-address says (ss -ltnp), so the cluster asks for its token:
    a server with another token joins nothing, and its run fails with a message that names the token."""
    from digitlab.runs.queue import JobQueue
    from digitlab.runs.runners.ray_runner import RayRunner

    address = ray_cluster.get_runtime_context().gcs_address
    monkeypatch.setenv("RAY_AUTH_TOKEN", "not-the-clusters-token")  # what the Ray training process is started with
    queue = JobQueue(ModelStore(tmp_path / "models"), runner=lambda: RayRunner(address))
    try:
        run = queue.submit(PRESETS["simple_net"].with_(epochs=1, train_limit=3000), mnist, owner="eve")
        refused = queue.wait(run.id, timeout=120)
        assert refused.state == "failed" and "could not be joined" in refused.message
        assert "RAY_AUTH_TOKEN" in refused.message and not list((tmp_path / "models").glob("*.json"))
    finally:
        queue.close()


def _until(check, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.xdist_group("ray_alone")  # no shared cluster: may run beside the module's others
def test_a_wrong_ray_address_trains_here_or_refuses_as_the_teacher_chose_and_holds_nobody(mnist, tmp_path,
                                                                                         monkeypatch):
    """With DIGITLAB_RAY_ADDRESS pointing at nothing, ray.init ran inside submit under the queue's lock and retried for
    minutes: one Train click gave no message in 200 s and students on Home timed out (issue 30). The address is
    checked in the slot's own thread now: with DIGITLAB_RAY_FALLBACK=refuse the run fails with a plain message; by
    default it trains in a local process and its page says so. Every other click is answered meanwhile."""
    import functools

    from digitlab.runs.queue import JobQueue
    from digitlab.runs.runners.ray_runner import RayRunner

    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    small = PRESETS["simple_net"].with_(epochs=1, train_limit=3000)
    monkeypatch.setenv("DIGITLAB_RAY_FALLBACK", "refuse")
    queue = JobQueue(ModelStore(tmp_path / "models"), runner=functools.partial(RayRunner, address))
    try:
        first = queue.submit(small, mnist, owner="a")  # answered at once: nothing is joined under the lock
        second = queue.submit(small.with_(seed=2), mnist, owner="b")  # another student's click, answered too
        queue.active()  # the sidebar's question, answered while the first run finds the address dead
        done = queue.wait(first.id, timeout=60)
        assert done.state == "failed"
        assert done.message.startswith(f"the Ray cluster at {address} is not answering")
        assert "Traceback" not in done.message
        assert queue.wait(second.id, timeout=60).state == "failed"  # each run says so; nothing else was lost
        monkeypatch.setenv("DIGITLAB_RAY_FALLBACK", "local")  # the default
        here = queue.wait(queue.submit(small.with_(seed=3), mnist, owner="c").id, timeout=120)
        assert here.state == "done", here.message
        assert here.notice == f"the Ray cluster at {address} is not answering; training here instead"
    finally:
        queue.close()


@pytest.mark.xdist_group("ray_alone")  # no shared cluster: may run beside the module's others
def test_a_ray_cluster_lost_mid_run_fails_that_run_and_the_class_goes_on(mnist, tmp_path):
    """Issue 30: the Ray cluster stopped during a run took the whole site down 60 s later (Ray's client ends the process
    it runs in), after the page showed Ray's raw text and "(often: a smaller learning rate)". Ray's client lives in a
    training process of its own now: the run fails with its own message, the queue answers throughout, the next run
    trains here while the cluster is down and on the cluster once it is back."""
    import functools
    import threading

    from digitlab.runs.queue import JobQueue
    from digitlab.runs.runners.ray_runner import RayRunner

    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="digitlab-ray-lost-"))
    try:
        local_ray.start(folder, port, nodes=1, cpus=2)
    except local_ray.RayError as e:
        pytest.fail(f"the Ray cluster could not be started: {e}")
    address = f"127.0.0.1:{port}"
    queue = JobQueue(ModelStore(tmp_path / "models"), runner=functools.partial(RayRunner, address))
    slowest, watching = [0.0], threading.Event()

    def student() -> None:  # a page asking the queue about its runs, twice a second, the whole time
        while not watching.wait(0.5):
            t = time.monotonic()
            queue.active()
            slowest[0] = max(slowest[0], time.monotonic() - t)

    threading.Thread(target=student, daemon=True).start()
    try:
        long = PRESETS["simple_net"].with_(epochs=40)
        run = queue.submit(long, mnist, owner="ann")
        _until(lambda: queue.snapshot(run.id).history, "the first epoch on Ray")
        assert queue.snapshot(run.id).notice == ""  # on the cluster
        local_ray.stop(folder)  # the whole cluster goes, mid-run
        lost = queue.wait(run.id, timeout=150)
        assert lost.state == "failed"
        assert lost.message.startswith(f"the Ray cluster at {address} went away during this run"), lost.message
        assert "learning rate" not in lost.message and "Traceback" not in lost.message
        small = PRESETS["simple_net"].with_(epochs=1, train_limit=3000)
        here = queue.wait(queue.submit(small, mnist, owner="bob").id, timeout=120)
        assert here.state == "done" and "training here instead" in here.notice  # trained here meanwhile
        local_ray.start(folder, port, nodes=1, cpus=2)  # the cluster is back, on its address
        back = queue.wait(queue.submit(small.with_(seed=5), mnist, owner="cy").id, timeout=300)
        assert back.state == "done" and back.notice == "", back.message  # on the cluster again
        assert slowest[0] <= 5.0, f"a student's question to the queue took {slowest[0]:.1f} s"
    finally:
        watching.set()
        queue.close()
        local_ray.stop(folder)
        shutil.rmtree(folder, ignore_errors=True)
