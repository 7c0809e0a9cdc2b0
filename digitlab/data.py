"""Where the data comes from -- MNIST, or Fashion-MNIST in the same format -- and how it is held: uint8 tensors.

Sources are tried in order and the first that works wins:
  1. a folder the user points at (``DIGITLAB_DATA_DIR`` for MNIST, ``DIGITLAB_FASHION_DIR`` for Fashion-MNIST;
     flat, or torchvision's <name>/raw layout);
  2. for Fashion-MNIST, where Debian's ``dataset-fashion-mnist`` package installs it;
  3. the local data folder (``./data`` or ``DIGITLAB_CACHE_DIR``; Fashion-MNIST in its ``fashion-mnist/``)
     where a download landed;
  4. a download from torchvision's mirrors for that dataset (``DIGITLAB_MNIST_MIRRORS`` /
     ``DIGITLAB_FASHION_MIRRORS`` override);
  5. the stratified sample bundled inside this package.
A source that fails is skipped with a reason the pages show; nothing partial is ever kept.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import settings

# The four files, by split and part.
FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
# md5 of the uncompressed canonical files: a content check that does not care how they were zipped.
CANONICAL_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
# Fashion-MNIST's, from its README and Debian's package (the .gz files differ between mirrors, their content not).
FASHION_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
FULL_COUNTS = {"train": 60_000, "test": 10_000}
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049  # 0x00000803, 0x00000801

# The two normalisations the seeds use.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
NORMALISATIONS = {
    "none": (0.0, 1.0),  # ToTensor only: 0..1
    "half": (0.5, 0.5),  # Normalize((0.5,), (0.5,)): -1..1
    "mnist": (MNIST_MEAN, MNIST_STD),  # Normalize((0.1307,), (0.3081,)): mean 0, std 1
}

SAMPLE_DIR = Path(__file__).parent / "sample"
CONNECT_TIMEOUT_S = 4.0


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset in MNIST's format: its names, and where each of its sources is."""

    key: str  # "mnist" | "fashion": what the URL, the CLI and the store say
    title: str
    classes: tuple[str, ...]  # class names, by label
    dir_env: str  # the environment variable naming a folder of its four files
    md5: dict[str, str]  # content checksums of the four uncompressed files
    mirrors_env: str
    torchvision_name: str  # the torchvision dataset class whose mirror list we use, and its raw folder's name
    sample_dir: Path
    cache_subdir: str = ""  # inside the local data folder
    system_dir: str = ""  # where a Debian package installs it, if one does
    noun: str = "digit"  # what one image is: "a 3 is a digit", "a Shirt is an item"

    def cache(self, root: Path) -> Path:
        return root / self.cache_subdir if self.cache_subdir else root


DATASETS = {
    "mnist": DatasetSpec(
        "mnist", "MNIST", tuple(str(d) for d in range(10)), "DIGITLAB_DATA_DIR", CANONICAL_MD5,
        "DIGITLAB_MNIST_MIRRORS", "MNIST", SAMPLE_DIR,
    ),
    "fashion": DatasetSpec(
        "fashion", "Fashion-MNIST",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        "DIGITLAB_FASHION_DIR", FASHION_MD5, "DIGITLAB_FASHION_MIRRORS", "FashionMNIST",
        Path(__file__).parent / "sample-fashion", cache_subdir="fashion-mnist",
        system_dir="/usr/share/datasets/fashion-mnist", noun="item",
    ),
}


def plural(name: str) -> str:
    """A class name for many of them: "3s", "Sneakers", "Dresses", "T-shirt/tops"."""
    return f"{name}es" if name.endswith("s") else f"{name}s"


def pair_task(yes: int, no: int) -> str:
    """The task string of a yes/no question between two classes: pair_task(3, 7) == "3v7" (3 is yes)."""
    return f"{int(yes)}v{int(no)}"


def dataset_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


class DataError(Exception):
    """A source that cannot be used, with a message fit for a page."""


@dataclass(frozen=True)
class Source:
    kind: str  # "folder" | "system" | "cache" | "download" | "sample"
    path: str
    skipped: tuple[str, ...] = ()  # why earlier sources were not used
    dataset: str = "mnist"

    @property
    def label(self) -> str:
        spec = DATASETS[self.dataset]
        return {
            "folder": f"{spec.title} folder {self.path} ({spec.dir_env})",
            "system": f"{spec.title} from Debian's dataset-fashion-mnist package ({self.path})",
            "cache": f"local data folder {self.path}",
            "download": f"downloaded to {self.path}",
            "sample": f"the bundled sample of {spec.title} ({sample_note(self.dataset)})",
        }[self.kind]


@functools.cache
def sample_note(dataset: str) -> str:
    """'500 train and 100 test images per digit', read from the headers of the sample's label files."""
    spec = DATASETS[dataset]
    counts = []
    for split in ("train", "test"):
        path = spec.sample_dir / f"{FILES[split, 'labels']}.gz"
        try:
            counts.append(int.from_bytes(decompress(path.read_bytes(), path)[4:8], "big"))
        except (OSError, DataError):
            return "missing"
    return f"{counts[0] // 10} train and {counts[1] // 10} test images per {'digit' if dataset == 'mnist' else 'class'}"


CHUNK = 4096  # images per step of a dataset-wide statistic: its wider copy stays ~25 MB, whatever the dataset's size


@dataclass(frozen=True, eq=False)
class MNIST:
    """The whole dataset as uint8 tensors: images [N, 28, 28], labels [N] int64."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: Source
    load_seconds: float = 0.0
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def is_sample(self) -> bool:
        return self.source.kind == "sample"

    @property
    def spec(self) -> DatasetSpec:
        return DATASETS[self.source.dataset]

    @property
    def classes(self) -> tuple[str, ...]:
        """The name of each label: '0'..'9' for MNIST, 'T-shirt/top'..'Ankle boot' for Fashion-MNIST."""
        return self.spec.classes

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if name == "train":
            return self.train_images, self.train_labels
        if name == "test":
            return self.test_images, self.test_labels
        raise ValueError(f"unknown split {name!r}: use 'train' or 'test'")

    def class_counts(self, name: str) -> list[int]:
        key = ("counts", name)
        if key not in self._cache:  # asked on every rerun of the Data Explorer: counted once
            self._cache[key] = torch.bincount(self.split(name)[1], minlength=10).tolist()
        return list(self._cache[key])

    def fingerprint(self) -> str:
        """A short content hash, so a stored model records exactly which data it saw."""
        if "fingerprint" not in self._cache:
            h = hashlib.sha256()
            for t in (self.train_images, self.train_labels, self.test_images, self.test_labels):
                h.update(t.contiguous().numpy())  # the tensor's own bytes, not a copy of them
            self._cache["fingerprint"] = h.hexdigest()[:16]
        return self._cache["fingerprint"]

    def mean_images(self, name: str = "train") -> torch.Tensor:
        """The average image of each digit, [10, 28, 28] in 0..255 (the 'ideal 3')."""
        key = ("mean", name)
        if key not in self._cache:
            images, labels = self.split(name)
            sums = torch.zeros(10, 28 * 28, dtype=torch.float64)
            for i in range(0, len(images), CHUNK):  # a float64 copy of a chunk, not of 60,000 images (376 MB)
                sums.index_add_(0, labels[i : i + CHUNK], images[i : i + CHUNK].reshape(-1, 28 * 28).to(torch.float64))
            counts = torch.bincount(labels, minlength=10).clamp(min=1).unsqueeze(1)
            self._cache[key] = (sums / counts).reshape(10, 28, 28).float()
        return self._cache[key]

    def pixel_histogram(self, name: str = "train") -> torch.Tensor:
        """How many pixels take each of the 256 values."""
        key = ("hist", name)
        if key not in self._cache:
            images = self.split(name)[0]
            self._cache[key] = sum(torch.bincount(images[i : i + CHUNK].reshape(-1).long(), minlength=256)
                                   for i in range(0, len(images), CHUNK))  # int64 a chunk at a time, as above
        return self._cache[key]


def to_float(images: torch.Tensor, norm: str = "none") -> torch.Tensor:
    """uint8 images -> float32, scaled to 0..1 and normalised: a run's training images once (train.model_inputs),
    anything else a batch or a block at a time."""
    mean, std = NORMALISATIONS[norm]
    x = images.to(torch.float32)
    if norm == "none":
        return x.div_(255.0)
    return x.mul_(1.0 / (255.0 * std)).sub_(mean / std)  # (x / 255 - mean) / std in two passes, not three


# ---------------------------------------------------------------- IDX parsing


def decompress(raw: bytes, path: Path) -> bytes:
    if raw[:2] == b"\x1f\x8b":
        try:
            return zlib.decompress(raw, 47)  # gzip wrapper; faster than the gzip module
        except zlib.error:
            try:  # multi-member gzip files
                return gzip.decompress(raw)
            except (OSError, EOFError, zlib.error) as e:
                raise DataError(f"{path.name}: the gzip data is corrupt or truncated ({e})") from None
    return raw


def parse_idx(raw: bytes, path: Path, part: str, title: str = "MNIST") -> np.ndarray:
    """Check an IDX file's header against its body and return the array it holds."""
    name = path.name
    if len(raw) < 8:
        raise DataError(f"{name}: too short to be an IDX file ({len(raw)} bytes)")
    magic = int.from_bytes(raw[0:4], "big")
    want = IMAGE_MAGIC if part == "images" else LABEL_MAGIC
    if magic != want:
        raise DataError(
            f"{name}: magic number {magic} (0x{magic:08x}) is not the {part} magic {want} (0x{want:08x})"
        )
    count = int.from_bytes(raw[4:8], "big")
    if part == "images":
        if len(raw) < 16:
            raise DataError(f"{name}: the header is cut short")
        rows, cols = int.from_bytes(raw[8:12], "big"), int.from_bytes(raw[12:16], "big")
        if (rows, cols) != (28, 28):
            raise DataError(f"{name}: images are {rows}x{cols}, {title} images are 28x28")
        body, shape = raw[16:], (count, 28, 28)
    else:
        body, shape = raw[8:], (count,)
    expected = int(np.prod(shape))
    if len(body) != expected:
        what = "truncated" if len(body) < expected else "longer than its header says"
        raise DataError(f"{name}: file is {what}: header promises {count} items ({expected} bytes), body has {len(body)}")
    arr = np.frombuffer(body, dtype=np.uint8).reshape(shape)
    if part == "labels" and count and int(arr.max()) > 9:
        raise DataError(f"{name}: holds label {int(arr.max())}; {title} labels are 0-9")
    return arr


def find_file(folder: Path, stem: str) -> Path | None:
    """The file for ``stem`` in a flat folder or torchvision's MNIST/raw (FashionMNIST/raw) layout, .gz or not."""
    for sub in (folder, folder / "MNIST" / "raw", folder / "FashionMNIST" / "raw", folder / "raw"):
        for candidate in (sub / stem, sub / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    return None


def read_idx(path: Path, part: str, title: str = "MNIST") -> np.ndarray:
    """One IDX file's array, mapped from an uncompressed file where one can be: the web server and its training
    process then share one copy of the images (the same file's pages), where each decompressing its own would hold
    one each (55 MB of MNIST). A .gz file is decompressed once into the local data folder for that (``unpacked``);
    where that folder cannot be written, it is decompressed into this process's memory, as a copy that is damaged
    or cut short is. The mapping is copy-on-write: nothing written to the arrays reaches the file."""
    with path.open("rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    if not gzipped:
        small = path.stat().st_size < 16  # (too short to be one: said by parse_idx; an empty file cannot be mapped)
        return parse_idx(path.read_bytes() if small else np.memmap(path, dtype=np.uint8, mode="c"), path, part, title)
    raw = path.read_bytes()
    if (copy := _unpacked(raw, path)) is not None:
        try:
            return parse_idx(np.memmap(copy, dtype=np.uint8, mode="c"), path, part, title)
        except (DataError, OSError, ValueError):
            pass  # the copy is damaged: the .gz itself decides
    return parse_idx(decompress(raw, path), path, part, title)


def _unpacked(raw: bytes, path: Path) -> Path | None:
    """The uncompressed copy of a .gz file's bytes in the local data folder (named by their hash), made if missing;
    None where it cannot be written."""
    target = cache_dir() / "unpacked" / f"{hashlib.sha256(raw).hexdigest()[:16]}-{path.name.removesuffix('.gz')}"
    if target.is_file():
        return target
    body = decompress(raw, path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(f".{target.name}.{os.getpid()}.part")
        part.write_bytes(body)
        os.replace(part, target)  # whole or not at all, whichever process writes it first
        return target
    except OSError:
        return None


def read_folder(folder: Path, title: str = "MNIST") -> dict[tuple[str, str], np.ndarray]:
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder")
    arrays = {}
    for (split, part), stem in FILES.items():
        path = find_file(folder, stem)
        if path is None:
            raise DataError(f"{folder}: {stem} (or {stem}.gz) is missing")
        arrays[split, part] = read_idx(path, part, title)
    for split in ("train", "test"):
        n_img, n_lab = len(arrays[split, "images"]), len(arrays[split, "labels"])
        if n_img != n_lab:
            raise DataError(f"{folder}: {split} has {n_img} images but {n_lab} labels")
        if n_img == 0:
            raise DataError(f"{folder}: the {split} split is empty")
    return arrays


def _to_dataset(arrays, source: Source, started: float) -> MNIST:
    # a mapped file's arrays as they are (a copy would undo the sharing); bytes read into memory are read-only
    t = {k: torch.from_numpy(v if v.flags.writeable else v.copy()) for k, v in arrays.items()}
    return MNIST(
        train_images=t["train", "images"],
        train_labels=t["train", "labels"].long(),
        test_images=t["test", "images"],
        test_labels=t["test", "labels"].long(),
        source=source,
        load_seconds=time.perf_counter() - started,
    )


# ---------------------------------------------------------------- download

ProgressFn = Callable[[str, int, int | None], None]  # (file, bytes so far, total bytes or None)


def mirrors(dataset: str = "mnist") -> list[str]:
    spec = dataset_spec(dataset)
    override = settings.get(spec.mirrors_env)
    if override:
        return [m if m.endswith("/") else m + "/" for m in override]
    import torchvision.datasets  # the lists torchvision keeps up to date

    return list(getattr(torchvision.datasets, spec.torchvision_name).mirrors)


def download(target: Path, progress: ProgressFn | None = None, timeout: float = CONNECT_TIMEOUT_S,
             dataset: str = "mnist") -> Path:
    """Fetch the four files into ``target``, all or nothing.

    Everything lands in a temporary folder beside ``target``; each file is checked against the
    canonical content md5, and only when all four pass are they moved into place.
    """
    spec = dataset_spec(dataset)
    target.mkdir(parents=True, exist_ok=True)
    errors = []
    for mirror in mirrors(dataset):
        staging = Path(tempfile.mkdtemp(prefix=".download-", dir=target))
        try:
            for stem in FILES.values():
                url = f"{mirror}{stem}.gz"
                dest = staging / f"{stem}.gz"
                _fetch(url, dest, progress, timeout)
                digest = hashlib.md5(decompress(dest.read_bytes(), dest)).hexdigest()
                if digest != spec.md5[stem]:
                    raise DataError(f"{url}: content checksum {digest} is not {spec.title}'s {spec.md5[stem]}")
            for f in staging.iterdir():
                os.replace(f, target / f.name)
            return target
        except (OSError, DataError, urllib.error.URLError, ValueError) as e:
            errors.append(f"{mirror}: {getattr(e, 'reason', e)}")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    raise DataError("download failed from every mirror: " + "; ".join(errors))


def _fetch(url: str, dest: Path, progress: ProgressFn | None, timeout: float) -> None:
    with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as out:
        total = resp.headers.get("Content-Length")
        total = int(total) if total and total.isdecimal() else None
        done = 0
        while chunk := resp.read(1 << 16):
            out.write(chunk)
            done += len(chunk)
            if progress:
                progress(dest.name, done, total)
        if total is not None and done != total:
            raise DataError(f"{url}: connection closed after {done} of {total} bytes")


# ---------------------------------------------------------------- choosing a source


def cache_dir() -> Path:
    return settings.get("DIGITLAB_CACHE_DIR")


def load_dataset(
    name: str = "mnist",
    data_dir: str | Path | None = None,
    *,
    cache: str | Path | None = None,
    allow_download: bool | None = None,
    progress: ProgressFn | None = None,
) -> MNIST:
    """Load a dataset from the first source that works; the result says which, and why not the others."""
    started = time.perf_counter()
    spec = dataset_spec(name)
    skipped: list[str] = []
    data_dir = data_dir if data_dir is not None else settings.get(spec.dir_env)
    cache = spec.cache(Path(cache) if cache is not None else cache_dir())
    offline_env = settings.get("DIGITLAB_OFFLINE")
    if allow_download is None:
        allow_download = not offline_env

    def dataset(folder: Path, kind: str) -> MNIST:
        source = Source(kind, str(folder), tuple(skipped), spec.key)
        return _to_dataset(read_folder(folder, spec.title), source, started)

    if data_dir:
        try:
            return dataset(Path(data_dir), "folder")
        except (DataError, OSError) as e:
            skipped.append(f"{spec.dir_env}: {e}")
    if spec.system_dir and Path(spec.system_dir).is_dir():
        try:
            return dataset(Path(spec.system_dir), "system")
        except (DataError, OSError) as e:
            skipped.append(f"{spec.system_dir}: {e}")
    if find_file(cache, FILES["train", "images"]):
        try:
            return dataset(cache, "cache")
        except (DataError, OSError) as e:
            skipped.append(f"local data folder: {e}")
    if allow_download:
        try:
            download(cache, progress, dataset=spec.key)
            return dataset(cache, "download")
        except (DataError, OSError) as e:
            skipped.append(f"download: {e}")
    else:
        skipped.append("download: switched off (DIGITLAB_OFFLINE)" if offline_env else "download: not tried")
    return dataset(spec.sample_dir, "sample")


def load_mnist(
    data_dir: str | Path | None = None,
    *,
    cache: str | Path | None = None,
    allow_download: bool | None = None,
    progress: ProgressFn | None = None,
) -> MNIST:
    """MNIST from the first source that works (see load_dataset)."""
    return load_dataset("mnist", data_dir, cache=cache, allow_download=allow_download, progress=progress)
