"""The command line on the real files: ``python -m digitlab ...`` as a user runs it, in a real subprocess, where the
process is the point (a run's weights in a process of its own, the server it starts, the installed package); its
other commands through ``cli.main`` in the test's process, with what they print and their exit status."""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "DIGITLAB_OFFLINE": "1", **env}
    return subprocess.run([sys.executable, "-m", "digitlab", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=600)  # a guard against a hang, not a time limit


@pytest.fixture()
def cli(capsys, monkeypatch):
    """``cli(*args, **env)``: ``python -m digitlab *args`` with these settings, run by ``cli.main`` in this process:
    (returncode, stdout, stderr) as the subprocess gives them."""
    from digitlab.cli import main

    def run(*args: str, **env: str):
        with monkeypatch.context() as m:
            for name, value in {"DIGITLAB_OFFLINE": "1", **env}.items():
                m.setenv(name, value)
            capsys.readouterr()
            try:
                code = main(list(args))
            except SystemExit as e:  # argparse's refusals
                code = e.code
            out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    return run


def test_data_info_on_full_mnist(mnist, cli):
    out = cli("data", "info", "--data-dir", mnist.source.path)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert f"source: MNIST folder {mnist.source.path}" in text
    assert "load time:" in text and f"fingerprint: {mnist.fingerprint()}" in text
    counts = mnist.class_counts("train")
    assert f"    1 {counts[1]:>7,} {mnist.class_counts('test')[1]:>7,}" in text
    assert "  all  60,000  10,000" in text
    assert text.count("canonical MNIST") == 4 and "NOT" not in text


def test_data_info_falls_back_to_sample_and_says_why(tmp_path, cli):
    out = cli("data", "info", "--data-dir", str(tmp_path / "nope"), DIGITLAB_CACHE_DIR=str(tmp_path / "c"))
    assert out.returncode == 0, out.stderr
    assert "source: the bundled sample" in out.stdout
    assert "skipped DIGITLAB_DATA_DIR:" in out.stdout and "is not a folder" in out.stdout
    assert "  all   5,000   1,000" in out.stdout
    # the sample's files are a subset, not the canonical MNIST files
    assert out.stdout.count("NOT the canonical MNIST file") == 4


def test_data_fetch_failure_is_a_message(tmp_path, cli):
    out = cli("data", "fetch", "--to", str(tmp_path / "t"), DIGITLAB_MNIST_MIRRORS="http://127.0.0.1:9/")
    assert out.returncode == 1
    assert "download failed from every mirror" in out.stderr and "Traceback" not in out.stderr
    assert list((tmp_path / "t").iterdir()) == []


def test_evaluate_scores_a_stored_model_and_refuses_a_missing_one(mnist, trained, cli):
    from digitlab import metrics
    from digitlab.store import ModelStore

    info = trained["mlp"]
    out = cli("evaluate", info.id)
    assert out.returncode == 0, out.stderr
    model, _ = ModelStore().load(info.id)
    pred = metrics.predict(model, info.config, mnist)
    assert f"test accuracy: {pred.accuracy:.2%} on 10,000 test images" in out.stdout
    cm = metrics.confusion_matrix(pred.targets, pred.predicted, 10)
    assert "    7 " + " ".join(f"{v:>5}" for v in cm[7].tolist()) in out.stdout  # the 7s' row, as counted

    missing = cli("evaluate", "no-such-model")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr and "no-such-model" in missing.stderr


@pytest.mark.slow  # a process of its own
def test_train_stores_its_epoch_records_and_the_weights_a_run_in_this_process_gets(mnist, tmp_path):
    """A config trains the same weights in the command line's own process as here, and its history rows are
    fit's epoch records."""
    import torch

    from digitlab.models import build_model
    from digitlab.store import ModelStore
    from digitlab.train import fit

    out = _run("train", "cnn", "--preset", "cnn-best", "--epochs", "1", "--train-limit", "1000", "--offline",
               DIGITLAB_MODEL_DIR=str(tmp_path), DIGITLAB_DATA_DIR=mnist.source.path)
    assert out.returncode == 0, out.stderr
    assert "epoch 1/1: test accuracy" in out.stdout
    store = ModelStore(tmp_path)
    (info,) = store.list()
    model, _ = store.load(info.id)
    here = build_model(info.config)  # dropout, augmentation, shuffling: all seeded from the config
    last = [e for e in fit(here, info.config, mnist) if e.kind == "epoch"][-1]
    # the times are the run's own (compute seconds, and the wall clock beside them), the rest is fit's record
    times = {k: info.history[0][k] for k in ("seconds", "images_per_s", "wall_seconds")}
    assert info.history == [{**last.record(), **times}]
    theirs, ours = model.state_dict(), here.state_dict()
    assert all(torch.equal(theirs[k], ours[k]) for k in ours)


@pytest.mark.slow  # a process of its own
def test_serve_listens_on_this_laptop_and_accepts_only_its_own_names(mnist, tmp_path):
    """python -m digitlab serve: the laptop's own names in the Host header are accepted, any other refused."""
    import http.client
    import signal
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "digitlab", "serve", "--port", str(port)], cwd=ROOT,
                            env={**os.environ, "DIGITLAB_MODEL_DIR": str(tmp_path), "DIGITLAB_OFFLINE": "1",
                                 "DIGITLAB_DATA_DIR": mnist.source.path}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        said = proc.stdout.readline()
        assert said.startswith(f"DigitLab on this laptop only, port {port}; accepted names: localhost, 127.0.0.1")
        assert socket.gethostname() in said

        def handshake(host: str) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.putrequest("GET", "/_stcore/stream", skip_host=True)
            for name, value in (("Host", host), ("Origin", f"http://{host}"), ("Upgrade", "websocket"),
                                ("Connection", "Upgrade"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                ("Sec-WebSocket-Version", "13")):
                conn.putheader(name, value)
            conn.endheaders()
            status = conn.getresponse().status
            conn.close()
            return status

        deadline = time.monotonic() + 60
        while True:
            try:
                first = handshake(f"{socket.gethostname()}:{port}")
                break
            except OSError:
                assert time.monotonic() < deadline, "the server never answered"
                time.sleep(0.3)
        assert first == 101  # the laptop's own host name, as a student's browser sends it
        assert handshake(f"evil.example:{port}") != 101
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def test_lr_find_prints_the_sweeps_suggestion_and_refuses_an_unknown_preset(mnist, capsys, cli):
    from digitlab.cli import main
    from digitlab.lr_find import lr_find
    from digitlab.models import PRESETS

    out = cli("lr-find", "mlp", "--preset", "simple_net", DIGITLAB_DATA_DIR=mnist.source.path)
    assert out.returncode == 0, out.stderr
    found = lr_find(PRESETS["simple_net"], mnist)  # the same sweep in this process: the same numbers
    assert f"suggested learning rate: {found.valley:.2g} (valley); steepest fall at {found.steepest:.2g}" in out.stdout
    assert f"{found.lrs[0]:>13.2e}  {found.losses[0]:.4f}" in out.stdout and "thrown away" in out.stdout
    assert main(["lr-find", "cnn", "--preset", "simple_net"]) == 2  # refused before any data is read
    assert "no cnn preset 'simple_net'; choose from cnn-seed" in capsys.readouterr().err


def test_dataset_flag_on_data_info_train_and_evaluate(fashion, tmp_path, cli):
    """--dataset fashion: the counts by class name and Fashion-MNIST's checksums; a run trained and stored as a
    Fashion-MNIST model, scored on Fashion-MNIST, and refused on MNIST."""
    info = cli("data", "info", "--dataset", "fashion")
    assert info.returncode == 0, info.stderr
    assert f"source: Fashion-MNIST folder {fashion.source.path}" in info.stdout
    train, test = fashion.class_counts("train"), fashion.class_counts("test")
    assert f"Ankle boot {train[9]:>7,} {test[9]:>7,}" in info.stdout and "       all  60,000  10,000" in info.stdout
    assert info.stdout.count("canonical Fashion-MNIST") == 4 and "NOT" not in info.stdout

    env = {"DIGITLAB_MODEL_DIR": str(tmp_path)}
    out = cli("train", "mlp", "--dataset", "fashion", "--epochs", "1", "--train-limit", "2000", **env)
    assert out.returncode == 0, out.stderr
    from digitlab.store import ModelStore

    (stored,) = ModelStore(tmp_path).list()
    assert stored.config.dataset == "fashion" and stored.config.classes[9] == "Ankle boot"
    scored = cli("evaluate", "--dataset", "fashion", **env)
    assert scored.returncode == 0, scored.stderr
    assert f"model: {stored.id}" in scored.stdout and "Ankle boot " in scored.stdout
    assert "on 10,000 test images" in scored.stdout
    refused = cli("evaluate", stored.id, "--dataset", "mnist", **env)
    assert refused.returncode == 2 and "trained on Fashion-MNIST, not MNIST" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_make_sample_writes_the_shipped_readme_from_its_packaged_templates(mnist, fashion, tmp_path, cli):
    """The READMEs and Fashion-MNIST's licence are package data (digitlab/templates), filled in by make-sample."""
    out = cli("data", "make-sample", "--data-dir", mnist.source.path, "--out", str(tmp_path / "mnist"),
               "--seed", "0", "--train-per-digit", "500", "--test-per-digit", "100")
    assert out.returncode == 0, out.stderr
    shipped = (ROOT / "digitlab" / "sample" / "README.md").read_text(encoding="utf-8")
    assert (tmp_path / "mnist" / "README.md").read_text(encoding="utf-8") == shipped  # the very file shipped
    out = cli("data", "make-sample", "--dataset", "fashion", "--out", str(tmp_path / "fashion"),
               "--seed", "0", "--train-per-digit", "30", "--test-per-digit", "6",
               DIGITLAB_FASHION_DIR=fashion.source.path)
    assert out.returncode == 0, out.stderr
    readme = (tmp_path / "fashion" / "README.md").read_text(encoding="utf-8")
    assert f"fingerprint `{fashion.fingerprint()}`" in readme and "--train-per-digit 30 --test-per-digit 6" in readme
    assert "released under the MIT License:\n\nCopyright (c) 2017 Zalando SE\n" in readme
    assert readme.endswith("OTHER DEALINGS\nIN THE SOFTWARE.\n") and "{" not in readme


@pytest.mark.slow  # a process of its own
def test_pip_install_ships_the_cli_templates(tmp_path):
    """What ``pip install .`` installs: the wheel built from pyproject.toml holds the templates the CLI reads."""
    import shutil
    import zipfile

    src = tmp_path / "src"  # a copy: building in the checkout would leave build/ and an egg-info there
    shutil.copytree(ROOT / "digitlab", src / "digitlab", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", src)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path), "-q"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("digitlab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"digitlab/templates/sample-readme-mnist.md", "digitlab/templates/sample-readme-fashion.md",
            "digitlab/templates/fashion-mnist-license.txt", "digitlab/sample/README.md",
            "digitlab/sample-fashion/README.md", "digitlab/metrics.py"} <= names


def test_serve_without_the_app_beside_the_package_says_to_run_it_from_a_checkout(tmp_path, monkeypatch, capsys):
    """`pip install .` installs the digitlab package, not app.py and pages/: serve says so instead of failing inside
    Streamlit."""
    from digitlab import cli, serve

    monkeypatch.setattr(serve, "ROOT", tmp_path)  # where a pip-installed package finds no app.py
    assert cli.main(["serve"]) == 1
    said = capsys.readouterr().err
    assert "app.py and pages/" in said and "checkout" in said
