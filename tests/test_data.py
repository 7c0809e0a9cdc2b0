"""The data layer on real MNIST bytes: every kind of bad file, both layouts, the download, the bundled sample."""

from __future__ import annotations

import dataclasses
import gzip
import http.server
import shutil
import threading
from functools import partial
from pathlib import Path

import pytest
import torch

from digitlab import data as D
from digitlab import data_files

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "mnist"


def _full_dir() -> Path:
    import os

    folder = Path(os.environ.get("DIGITLAB_DATA_DIR") or SHARED)
    assert D.find_file(folder, D.FILES["train", "images"]), f"tests need the real MNIST in {folder}"
    return folder


def _copy_sample(to: Path, gz: bool = True, dataset: str = "mnist") -> Path:
    """A bundled sample (real MNIST digits, 1 MB; or real Fashion-MNIST images) as a folder we may break."""
    to.mkdir(parents=True, exist_ok=True)
    for stem in D.FILES.values():
        src = D.DATASETS[dataset].sample_dir / f"{stem}.gz"
        if gz:
            shutil.copy(src, to / src.name)
        else:
            (to / stem).write_bytes(gzip.decompress(src.read_bytes()))
    return to


def _raw(folder: Path, stem: str) -> bytes:
    return gzip.decompress((folder / f"{stem}.gz").read_bytes())


def _put(folder: Path, stem: str, payload: bytes) -> None:
    (folder / f"{stem}.gz").write_bytes(gzip.compress(payload, mtime=0))


# ---------------------------------------------------------------- layouts


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("layout", ["flat", "MNIST/raw"])
def test_folder_layouts_load(tmp_path, gz, layout):
    folder = tmp_path / "d"
    _copy_sample(folder / layout if layout != "flat" else folder, gz=gz)
    data = D.load_mnist(folder, cache=tmp_path / "cache", allow_download=False)
    assert data.source.kind == "folder" and data.source.skipped == ()
    assert data.train_images.shape == (5000, 28, 28) and data.train_images.dtype == torch.uint8
    assert data.class_counts("train") == [500] * 10 and data.class_counts("test") == [100] * 10
    assert data.train_labels.dtype == torch.int64


def test_full_mnist(mnist):
    assert mnist.train_images.shape == (60_000, 28, 28) and mnist.test_images.shape == (10_000, 28, 28)
    assert mnist.class_counts("train")[1] == 6742 and sum(mnist.class_counts("test")) == 10_000
    sums = {stem: ok for stem, (_, ok) in data_files.content_checksums(_full_dir()).items()}
    assert sums == {stem: True for stem in D.FILES.values()}
    # the 'ideal 3' is an average of real 3s: brightest in the middle, paper at the corners
    three = mnist.mean_images("train")[3]
    assert three[0, 0] == 0 and three[10:18, 10:18].mean() > 60
    assert int(mnist.pixel_histogram("train").sum()) == 60_000 * 784


# ---------------------------------------------------------------- each kind of bad file


def _corrupt_magic(f: Path) -> tuple[str, str]:
    stem = D.FILES["train", "images"]
    raw = _raw(f, stem)
    _put(f, stem, (1234).to_bytes(4, "big") + raw[4:])
    return stem, "magic number 1234"


def _corrupt_dims(f: Path) -> tuple[str, str]:
    stem = D.FILES["train", "images"]
    raw = _raw(f, stem)
    _put(f, stem, raw[:8] + (32).to_bytes(4, "big") + (32).to_bytes(4, "big") + raw[16:])
    return stem, "32x32"


def _corrupt_truncated(f: Path) -> tuple[str, str]:
    stem = D.FILES["test", "images"]
    _put(f, stem, _raw(f, stem)[:-1000])
    return stem, "truncated"


def _corrupt_gzip(f: Path) -> tuple[str, str]:
    stem = D.FILES["train", "labels"]
    blob = (f / f"{stem}.gz").read_bytes()
    (f / f"{stem}.gz").write_bytes(blob[: len(blob) // 2])
    return stem, "gzip data is corrupt or truncated"


def _corrupt_count(f: Path) -> tuple[str, str]:
    stem = D.FILES["test", "labels"]
    raw = _raw(f, stem)
    _put(f, stem, raw[:4] + (999).to_bytes(4, "big") + raw[8:8 + 999])
    return "test has 1000 images but 999 labels", "test has 1000 images but 999 labels"


def _corrupt_label(f: Path) -> tuple[str, str]:
    stem = D.FILES["train", "labels"]
    raw = bytearray(_raw(f, stem))
    raw[100] = 12
    _put(f, stem, bytes(raw))
    return stem, "label 12"


def _corrupt_missing(f: Path) -> tuple[str, str]:
    stem = D.FILES["test", "labels"]
    (f / f"{stem}.gz").unlink()
    return stem, "missing"


CORRUPTIONS = {
    "bad magic": _corrupt_magic,
    "wrong dims": _corrupt_dims,
    "truncated": _corrupt_truncated,
    "corrupt gzip": _corrupt_gzip,
    "count mismatch": _corrupt_count,
    "label above 9": _corrupt_label,
    "missing file": _corrupt_missing,
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_bad_file_names_file_and_problem_and_falls_back(tmp_path, kind):
    folder = _copy_sample(tmp_path / "bad")
    names, problem = CORRUPTIONS[kind](folder)
    with pytest.raises(D.DataError) as err:
        D.read_folder(folder)
    assert names in str(err.value) and problem in str(err.value), str(err.value)

    # the app stays usable: the next source (a good local data folder here) wins, and says why
    good = _copy_sample(tmp_path / "cache")
    data = D.load_mnist(folder, cache=good, allow_download=False)
    assert data.source.kind == "cache" and len(data.train_images) == 5000
    assert len(data.source.skipped) == 1
    assert data.source.skipped[0].startswith("DIGITLAB_DATA_DIR:") and problem in data.source.skipped[0]


def test_uncompressed_truncated_file(tmp_path):
    folder = _copy_sample(tmp_path / "raw", gz=False)
    stem = D.FILES["train", "images"]
    path = folder / stem
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(D.DataError, match=f"{stem}: file is truncated"):
        D.read_folder(folder)


def test_a_gz_folder_is_mapped_from_one_unpacked_copy_that_processes_share(tmp_path, monkeypatch):
    """The web server and its training process each load the dataset: from a .gz folder both map the one
    uncompressed copy in the local data folder (its pages held once), not a decompressed copy each. A damaged copy,
    or a data folder that cannot be written, still loads the same images; writing to them never reaches the file."""
    folder = _copy_sample(tmp_path / "gz")
    monkeypatch.setenv("DIGITLAB_CACHE_DIR", str(tmp_path / "local"))
    first = D.load_mnist(folder, allow_download=False)
    copies = sorted((tmp_path / "local" / "unpacked").iterdir())
    assert len(copies) == 4 and not [p for p in copies if p.name.endswith(".part")]
    images = next(p for p in copies if p.name.endswith(D.FILES["train", "images"]))
    assert images.read_bytes() == _raw(folder, D.FILES["train", "images"])
    assert str(images) in Path("/proc/self/maps").read_text()  # the tensor's pages are the file's
    again = D.load_mnist(folder, allow_download=False)
    assert again.fingerprint() == first.fingerprint() and sorted((tmp_path / "local" / "unpacked").iterdir()) == copies

    again.train_images[0] = 255  # copy-on-write: this process's page, not the file
    assert images.read_bytes() == _raw(folder, D.FILES["train", "images"])
    assert D.load_mnist(folder, allow_download=False).fingerprint() == first.fingerprint()

    cut = images.read_bytes()[:1000]
    images.unlink()  # (a new file: this process still maps the old one, which must not shrink under it)
    images.write_bytes(cut)  # cut short (a full disk, a hand): the .gz decides
    assert D.load_mnist(folder, allow_download=False).fingerprint() == first.fingerprint()
    (tmp_path / "a file").write_text("not a folder")
    monkeypatch.setenv("DIGITLAB_CACHE_DIR", str(tmp_path / "a file"))  # nowhere to unpack: into memory
    assert D.load_mnist(folder, allow_download=False).fingerprint() == first.fingerprint()


def test_everything_bad_offline_falls_back_to_sample(tmp_path):
    data = D.load_mnist(tmp_path / "nowhere", cache=tmp_path / "empty", allow_download=False)
    assert data.is_sample and data.source.kind == "sample"
    assert any("is not a folder" in r for r in data.source.skipped)
    assert any("switched off" in r for r in data.source.skipped)


# ---------------------------------------------------------------- download from a real HTTP server


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass


class _LyingHandler(_Handler):
    """Promises the whole file but hangs up halfway: a dropped connection."""

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.close_connection = True


@pytest.fixture()
def serve(tmp_path):
    servers = []

    def start(folder: Path, handler=_Handler) -> str:
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(folder)))
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def _mirror_copy(to: Path) -> Path:
    to.mkdir()
    for stem in D.FILES.values():
        shutil.copy(D.find_file(_full_dir(), stem), to / f"{stem}.gz")
    return to


def test_download_from_local_server(tmp_path, serve, monkeypatch):
    url = serve(_mirror_copy(tmp_path / "mirror"))
    monkeypatch.setenv("DIGITLAB_MNIST_MIRRORS", url)
    seen: dict[str, int] = {}
    data = D.load_mnist(tmp_path / "missing", cache=tmp_path / "cache", allow_download=True,
                        progress=lambda name, done, total: seen.__setitem__(name, done))
    assert data.source.kind == "download" and len(data.train_images) == 60_000
    name = f"{D.FILES['train', 'images']}.gz"
    assert seen[name] == (tmp_path / "mirror" / name).stat().st_size  # progress saw every byte
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(f"{s}.gz" for s in D.FILES.values())
    # the next start finds it in the local data folder, no network
    monkeypatch.delenv("DIGITLAB_DATA_DIR", raising=False)
    again = D.load_mnist(None, cache=tmp_path / "cache", allow_download=False)
    assert again.source.kind == "cache" and again.fingerprint() == data.fingerprint()


def _only_sentinel(target: Path) -> None:
    assert [p.name for p in target.iterdir()] == ["keep.txt"], list(target.iterdir())
    assert (target / "keep.txt").read_text() == "mine"


def test_download_corrupt_file_leaves_nothing(tmp_path, serve, monkeypatch):
    mirror = _mirror_copy(tmp_path / "mirror")
    stem = D.FILES["test", "images"]
    blob = (mirror / f"{stem}.gz").read_bytes()
    (mirror / f"{stem}.gz").write_bytes(blob[: len(blob) - 5000])  # served whole, but a cut-short gzip
    monkeypatch.setenv("DIGITLAB_MNIST_MIRRORS", serve(mirror))
    target = tmp_path / "cache"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(D.DataError) as err:
        D.download(target)
    assert "download failed from every mirror" in str(err.value) and f"{stem}.gz" in str(err.value)
    assert "corrupt or truncated" in str(err.value)
    _only_sentinel(target)


def test_download_dropped_connection_then_fallback(tmp_path, serve, monkeypatch):
    mirror = _mirror_copy(tmp_path / "mirror")
    bad, good = serve(mirror, _LyingHandler), serve(tmp_path / "nothing-here")
    (tmp_path / "nothing-here").mkdir()
    monkeypatch.setenv("DIGITLAB_MNIST_MIRRORS", f"{bad},{good}")
    target = tmp_path / "cache"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(D.DataError) as err:
        D.download(target)
    msg = str(err.value)
    assert bad in msg and "connection closed after" in msg  # first mirror: cut short
    assert good in msg and "not found" in msg.lower()  # second mirror: 404
    _only_sentinel(target)
    # through load_mnist the app falls back to the sample and says why
    data = D.load_mnist(tmp_path / "missing", cache=target, allow_download=True)
    assert data.is_sample and any(r.startswith("download: download failed") for r in data.source.skipped)
    _only_sentinel(target)


# ---------------------------------------------------------------- the bundled sample


def test_bundled_sample(mnist):
    size = sum(p.stat().st_size for p in D.SAMPLE_DIR.glob("*.gz"))
    assert size < 2_000_000
    sample = D.load_mnist(D.SAMPLE_DIR, allow_download=False)  # as a folder: validates every file
    assert sample.class_counts("train") == [500] * 10 and sample.class_counts("test") == [100] * 10
    # every sample image is a real MNIST image of the same split with the same label
    full_index = {bytes(img.numpy().tobytes()): int(lab) for img, lab in zip(mnist.test_images, mnist.test_labels)}
    for img, lab in zip(sample.test_images, sample.test_labels):
        assert full_index[img.numpy().tobytes()] == int(lab)
    readme = (D.SAMPLE_DIR / "README.md").read_text()
    assert "CC BY-SA 3.0" in readme and "LeCun" in readme and "Cortes" in readme and "Burges" in readme


def test_make_sample_is_reproducible(mnist, tmp_path):
    sizes = data_files.make_sample(mnist, tmp_path, per_class=(500, 100), seed=0)
    for name in sizes:
        assert (tmp_path / name).read_bytes() == (D.SAMPLE_DIR / name).read_bytes()


def test_to_float_normalisations(mnist):
    x = mnist.train_images[:2000]
    assert to_range(D.to_float(x, "none")) == (0.0, 1.0)
    assert to_range(D.to_float(x, "half")) == (-1.0, 1.0)
    m = D.to_float(mnist.train_images, "mnist")
    assert abs(float(m.mean())) < 1e-3 and abs(float(m.std()) - 1) < 1e-3


def to_range(t: torch.Tensor) -> tuple[float, float]:
    return round(float(t.min()), 4), round(float(t.max()), 4)


# ---------------------------------------------------------------- Fashion-MNIST: the same rules


def test_fashion_mnist_loads_with_its_class_names_and_canonical_files(fashion):
    assert fashion.source.label.startswith("Fashion-MNIST folder ") and "DIGITLAB_FASHION_DIR" in fashion.source.label
    assert fashion.train_images.shape == (60_000, 28, 28) and len(fashion.test_labels) == 10_000
    assert fashion.classes[0] == "T-shirt/top" and fashion.classes[6] == "Shirt" and fashion.classes[9] == "Ankle boot"
    assert fashion.class_counts("test") == [1000] * 10
    sums = data_files.content_checksums(Path(fashion.source.path), "fashion")
    assert len(sums) == 4 and all(ok for _, ok in sums.values())
    # the two datasets are told apart by content, so a model records which one it saw
    assert not any(ok for _, ok in data_files.content_checksums(Path(fashion.source.path), "mnist").values())


def test_fashion_mnist_from_debians_package_location_before_the_local_folder(tmp_path, monkeypatch):
    system = tmp_path / "usr-share-datasets-fashion-mnist"
    shutil.copytree(D.DATASETS["fashion"].sample_dir, system)
    spec = dataclasses.replace(D.DATASETS["fashion"], system_dir=str(system))
    monkeypatch.setitem(D.DATASETS, "fashion", spec)
    monkeypatch.delenv("DIGITLAB_FASHION_DIR", raising=False)
    data = D.load_dataset("fashion", cache=tmp_path / "cache", allow_download=False)
    assert data.source.kind == "system" and "dataset-fashion-mnist" in data.source.label
    # a folder named by the variable comes first; a broken one is skipped with its reason
    monkeypatch.setenv("DIGITLAB_FASHION_DIR", str(tmp_path / "nowhere"))
    data = D.load_dataset("fashion", cache=tmp_path / "cache", allow_download=False)
    assert data.source.kind == "system" and data.source.skipped[0].startswith("DIGITLAB_FASHION_DIR:")


def test_fashion_mnist_download_from_local_server_checks_its_own_checksums(tmp_path, serve, monkeypatch, fashion):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for stem in D.FILES.values():
        shutil.copy(D.find_file(Path(fashion.source.path), stem), mirror / f"{stem}.gz")
    monkeypatch.setenv("DIGITLAB_FASHION_MIRRORS", serve(mirror))
    monkeypatch.delenv("DIGITLAB_FASHION_DIR", raising=False)
    data = D.load_dataset("fashion", cache=tmp_path / "cache", allow_download=True)
    assert data.source.kind == "download" and data.fingerprint() == fashion.fingerprint()
    assert (tmp_path / "cache" / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").is_file()  # beside MNIST's, not over it
    # a mirror serving MNIST under Fashion-MNIST's names is refused, and nothing is kept
    monkeypatch.setenv("DIGITLAB_FASHION_MIRRORS", serve(_mirror_copy(tmp_path / "mnist-mirror")))
    with pytest.raises(D.DataError, match="is not Fashion-MNIST's"):
        D.download(tmp_path / "other", dataset="fashion")
    assert list((tmp_path / "other").iterdir()) == []


def test_fashion_mnist_offline_starts_on_its_bundled_sample(tmp_path, monkeypatch, fashion):
    monkeypatch.delenv("DIGITLAB_FASHION_DIR", raising=False)
    data = D.load_dataset("fashion", cache=tmp_path / "empty", allow_download=False)
    assert data.is_sample and data.source.label.startswith("the bundled sample of Fashion-MNIST (300 train")
    assert data.class_counts("train") == [300] * 10 and data.class_counts("test") == [60] * 10
    assert sum(p.stat().st_size for p in D.DATASETS["fashion"].sample_dir.glob("*.gz")) <= 2_000_000
    full_index = {img.numpy().tobytes(): int(lab) for img, lab in zip(fashion.test_images, fashion.test_labels)}
    assert all(full_index[img.numpy().tobytes()] == int(lab) for img, lab in zip(data.test_images, data.test_labels))
    readme = (D.DATASETS["fashion"].sample_dir / "README.md").read_text()
    assert "MIT License" in readme and "Zalando" in readme and fashion.fingerprint() in readme
    made = data_files.make_sample(fashion, tmp_path / "again", per_class=(300, 60), seed=0)  # the command remakes it exactly
    assert all((tmp_path / "again" / n).read_bytes() == (D.DATASETS["fashion"].sample_dir / n).read_bytes() for n in made)


@pytest.mark.parametrize("kind", [k for k in CORRUPTIONS if k != "count mismatch"])  # its numbers are MNIST's sample's
def test_a_bad_fashion_file_is_named_and_the_next_source_is_used(tmp_path, monkeypatch, kind):
    folder = _copy_sample(tmp_path / "bad", dataset="fashion")
    names, problem = CORRUPTIONS[kind](folder)
    monkeypatch.setenv("DIGITLAB_FASHION_DIR", str(folder))
    good = _copy_sample(tmp_path / "cache" / "fashion-mnist", dataset="fashion")  # the local data folder's place
    data = D.load_dataset("fashion", cache=tmp_path / "cache", allow_download=False)
    assert data.source.kind == "cache" and data.source.path == str(good) and data.classes[0] == "T-shirt/top"
    assert data.class_counts("train") == [300] * 10
    (reason,) = data.source.skipped
    assert reason.startswith("DIGITLAB_FASHION_DIR:") and names in reason and problem in reason, reason


def test_an_unknown_dataset_is_a_plain_error():
    with pytest.raises(D.DataError, match="unknown dataset 'kmnist'"):
        D.load_dataset("kmnist")
