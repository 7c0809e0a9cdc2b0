"""The training process (``python -m digitlab.runs.worker [--ray ADDRESS] [--lean]``), started by ``runners.process`` (with
``--ray``, by ``runners.ray_runner``: its runs are then Ray tasks on that cluster): it trains one run
at a time and speaks JSON lines (``spec.to_line``): ``Command``s on stdin (run, load, cancel, pause, resume, step,
quit), messages on a private copy of stdout (``Ready``, then each run's); anything else printed goes to stderr.

Each run's steering (``Steering``, consulted by fit's between-batches hook) is set from its commands, which may
arrive before the run starts. Once a run is done, its model's analysis is made: what Evaluate paints first at
once, the costly rest (robustness) when no run is waiting.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback

from .. import settings
from ..memory import give_back_free_memory, without_gpu_code_pages, without_gpu_compiler
from .execute import analyse_model, load_data, run_and_report, worker_threads
from .spec import Command, Finished, Ready, from_line, to_line
from .steering import OPS, Steering

IDLE_BEFORE_ANALYSIS_S = 0.5  # a model's costly analysis waits until no run has come for this long: runs go first


def main(argv: list[str] | None = None, forked: bool = False) -> int:
    """``forked``: a fork of the zygote (runners.zygote), which has made the imports and handed back the CUDA code."""
    argv = sys.argv[1:] if argv is None else argv
    lean = "--lean" in argv  # started ahead of a server's first run: its compiler stack waits for that run
    argv = [a for a in argv if a != "--lean"]
    ray_address = argv[1] if argv[:1] == ["--ray"] and len(argv) > 1 else ""
    out = os.fdopen(os.dup(1), "w", buffering=1)  # the protocol's own copy of stdout...
    os.dup2(2, 1)  # ...and everything else anyone prints goes to stderr
    sys.stdout = sys.stderr
    try:
        os.nice(settings.get("DIGITLAB_WORKER_NICE"))  # below the web server: clicks first
    except (AttributeError, OSError):
        pass
    settings.put("DIGITLAB_THREADS", worker_threads())
    write_lock = threading.Lock()

    def emit(message) -> None:
        with write_lock:
            try:
                out.write(to_line(message) + "\n")
            except (BrokenPipeError, ValueError):
                pass  # the server has gone: a run still ends and is saved; closed stdin then ends this process

    without_gpu_compiler()  # 70 MB less in every training process
    import torch  # imported before Ready: a job's start then costs no import

    from .. import live, store, train  # noqa: F401  (run_job's own imports, made here for the same reason)

    if not lean:  # the first optimiser a process makes imports torch's compiler stack (about 1 s): made before Ready
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    if not forked:  # (the zygote did it before forking)
        without_gpu_code_pages()  # about 125 MB less in every training process on a machine with no GPU
    # its threads from the start, not only once fit begins: work before it (the live pictures' first look) would
    # otherwise run on every core, and the idle threads' spinning would be counted as the run's compute time
    torch.set_num_threads(worker_threads())

    runs: list[Command] = []
    have_run = threading.Condition()
    steerings: dict[str, Steering] = {}  # a command can come before its run starts: kept, then followed
    lock = threading.Lock()

    def steering_of(job: str) -> Steering:
        with lock:
            return steerings.setdefault(job, Steering())

    def read_commands() -> None:
        for line in sys.stdin:
            cmd = from_line(line)
            if not isinstance(cmd, Command):
                continue
            if cmd.op in OPS:
                steering_of(cmd.job).apply(cmd.op)
            elif cmd.op in ("run", "load"):
                with have_run:
                    runs.append(cmd)
                    have_run.notify()
            elif cmd.op == "quit":
                break
        # stdin closed (or quit): the server has gone, so this process goes too, and now, not after its runs: a run
        # stops at its next batch, a paused one at once (its pause timer lived in the server), keeping the epochs it
        # finished (a stopped run saves them); the runs not started are dropped.
        with lock:
            for steering in steerings.values():
                steering.apply("resume")
                steering.apply("cancel")
        with have_run:
            runs[:] = [Command("quit")]
            have_run.notify()

    threading.Thread(target=read_commands, daemon=True).start()
    emit(Ready(os.getpid(), worker_threads()))
    data_cache: dict = {}
    to_analyse: list[tuple] = []  # (spec, model id) whose robustness curves wait until no run does
    while True:
        with have_run:
            if not runs and to_analyse:
                have_run.wait(IDLE_BEFORE_ANALYSIS_S)  # the queue hands over its next run within milliseconds
            while not runs and not to_analyse:
                have_run.wait()
            cmd = runs.pop(0) if runs else None
        if cmd is None:
            spec, model_id = to_analyse.pop(0)
            if not analyse_model(spec.store, model_id, load_data(spec, data_cache), give_way=lambda: bool(runs)):
                to_analyse.insert(0, (spec, model_id))  # a run came in: it trains first, this waits for the next lull
            continue
        if cmd.op == "quit":
            return 0
        if cmd.op == "load":  # a page expects a run soon: its dataset is read now, not after Train
            try:
                load_data(cmd.spec, data_cache)
            except Exception:  # the run that follows reports what is wrong with the data
                traceback.print_exc()
            give_back_free_memory()  # the file's compressed and decompressed bytes are freed: the pages go back
            continue
        spec = cmd.spec
        try:
            data = load_data(spec, data_cache)
        except Exception as e:  # the web process loaded it; if this process cannot, say why
            emit(Finished.failed(spec.job, f"the training process could not load the data: {e}", str(e)))
            continue
        if ray_address:  # a task on the cluster, which sends the model's analysis back with it
            from .runners.ray_task import run_in_worker

            run_in_worker(ray_address, spec, data, steering_of(spec.job), emit)
            with lock:
                steerings.pop(spec.job, None)
            continue
        finished = run_and_report(spec, data, steering_of(spec.job), emit)
        give_back_free_memory()  # the run's float copy of its images and its blocks are freed: their pages go back
        with lock:
            steerings.pop(spec.job, None)
        if finished.model_id:
            analyse_model(spec.store, finished.model_id, data, complete=False)  # what Evaluate paints first
            if settings.get("DIGITLAB_ANALYSE_AHEAD"):
                to_analyse.append((spec, finished.model_id))


if __name__ == "__main__":
    sys.exit(main())
