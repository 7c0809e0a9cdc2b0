"""The dataset's files as the ``data`` commands see them: each file's checksum, and the bundled sample made from the
full set (four small IDX .gz files the package ships, for a machine with no data)."""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import torch

from .data import FILES, IMAGE_MAGIC, LABEL_MAGIC, MNIST, dataset_spec, decompress, find_file


def content_checksums(folder: Path, dataset: str = "mnist") -> dict[str, tuple[str, bool]]:
    """md5 of each uncompressed file, and whether it is the dataset's canonical file."""
    canonical = dataset_spec(dataset).md5
    out = {}
    for stem in FILES.values():
        path = find_file(folder, stem)
        if path is None:
            continue
        digest = hashlib.md5(decompress(path.read_bytes(), path)).hexdigest()
        out[stem] = (digest, digest == canonical[stem])
    return out


def make_sample(full: MNIST, out: Path | None = None, per_class=(500, 100), seed: int = 0) -> dict[str, int]:
    """Write a stratified sample of ``full`` as four IDX .gz files: ``per_class`` train/test images a class.
    By default it goes where the package looks for that dataset's sample."""
    out = out if out is not None else full.spec.sample_dir
    gen = torch.Generator().manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for split, n in zip(("train", "test"), per_class):
        images, labels = full.split(split)
        picks = []
        for d in range(10):
            idx = (labels == d).nonzero().squeeze(1)
            picks.append(idx[torch.randperm(len(idx), generator=gen)[:n]])
        order = torch.cat(picks).sort().values  # keep MNIST's own order
        img, lab = images[order].numpy(), labels[order].to(torch.uint8).numpy()
        header_i = IMAGE_MAGIC.to_bytes(4, "big") + len(img).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
        header_l = LABEL_MAGIC.to_bytes(4, "big") + len(lab).to_bytes(4, "big")
        for part, payload in (("images", header_i + img.tobytes()), ("labels", header_l + lab.tobytes())):
            path = out / f"{FILES[split, part]}.gz"
            tmp = path.with_suffix(".tmp")
            with gzip.GzipFile(tmp, "wb", compresslevel=9, mtime=0) as f:
                f.write(payload)
            os.replace(tmp, path)
            sizes[path.name] = path.stat().st_size
    return sizes
