"""Training figures of issue 13: our pipeline beside the seeds' own, in one run, on this machine.

    DIGITLAB_DATA_DIR=../shared/mnist python bench/bench_train.py            # speed + time to 99.0%
    DIGITLAB_DATA_DIR=../shared/mnist python bench/bench_train.py --accuracy # + every preset's full run

The seed pipeline is the tutorials' own code path: torchvision ``datasets.MNIST`` read from the IDX
files, ``transforms.ToTensor()`` and ``Normalize((0.5,), (0.5,))`` applied to one PIL image at a time,
a ``DataLoader`` with batch 64, and the tutorials' loop (zero_grad, forward, loss, backward, step,
``loss.item()``). Ours is ``digitlab.train.fit`` on the uint8 tensors from ``digitlab.data``.

1. Speed at the same recipe (same model, optimizer, learning rate, batch 64): images per second over
   the same training steps (whole blocks of fit's gathers, after a warm-up), the pipelines measured in
   alternating rounds, best of each.
   Beside them: the tutorial's own float32 step on batches already in memory (no data path at all), timed
   in turns with ours (the steps between two of fit's reports each) so both see the same moments of the machine, and ours with the other
   precision (DIGITLAB_PRECISION), so the table shows what autocast is worth.
   Targets: DigitCNN >= 2x the seed pipeline; the 784-128-64-10 MLP at least as fast as the tutorial's
   step on batches in memory (our data path costs nothing).
2. Wall time to 99.0% test accuracy, from nothing loaded to the first epoch whose test accuracy is
   >= 99.0%: the seed's DigitCNN recipe through the seed pipeline, and our cnn-fast preset through fit.
   Targets: ours <= 10 s and >= 8x sooner.
3. (--accuracy) Every preset trained in full, its final test accuracy beside its target.

Results are appended to bench/RESULTS.md (unless --no-record). Timings only mean something on an
otherwise idle machine.
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results import record  # noqa: E402

from digitlab.data import FILES, find_file, load_mnist  # noqa: E402
from digitlab.models import PRESETS, DigitCNN, TrainConfig, build_model  # noqa: E402
from digitlab.train import (  # noqa: E402
    BLOCK_IMAGES,
    compute_dtype,
    device_label,
    fit,
    model_inputs,
    pick_device,
    task_data,
    task_size,
)

TARGET = 0.99
TURNS_PER_ROUND = 3  # ours and the tutorial's in-memory step timed in turns, this many times a round

# ---------------------------------------------------------------- the seed pipeline


def seed_root(folder: Path) -> Path:
    """A torchvision MNIST root (MNIST/raw/*-ubyte) made from the same IDX files our loader reads."""
    root = Path(tempfile.mkdtemp(prefix="digitlab-seed-"))
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in FILES.values():
        src = find_file(folder, stem)
        if src is None:
            raise SystemExit(f"{stem} is not in {folder}")
        opener = gzip.open if src.suffix == ".gz" else open
        with opener(src, "rb") as fin, open(raw / stem, "wb") as fout:
            shutil.copyfileobj(fin, fout)
    return root


def seed_loaders(root: Path, batch_size: int = 64):
    """The tutorials' data path, line for line: ToTensor + Normalize per image, a DataLoader of 64."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    train_data = datasets.MNIST(root=str(root), train=True, download=False, transform=transform)
    test_data = datasets.MNIST(root=str(root), train=False, download=False, transform=transform)
    train_loader = DataLoader(train_data, batch_size=batch_size, shuffle=True)
    test_loader = DataLoader(test_data, batch_size=batch_size, shuffle=False)
    return train_loader, test_loader


def seed_model_and_optimizer(kind: str):
    """The seeds' models and optimizers: the PyTorch MLP tutorial's, and the DigitCNN tutorial's."""
    if kind == "mlp":  # the tutorial's nn.Sequential as written: 784-128-64-10, ReLU/Tanh, LogSoftmax + NLLLoss
        model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.Tanh(), nn.Linear(64, 10),
                              nn.LogSoftmax(dim=1))
        return model, nn.NLLLoss(), torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model = DigitCNN()  # Adam 1e-3, CrossEntropyLoss
    return model, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters(), lr=0.001)


def seed_steps(kind: str, model, criterion, optimizer, loader, max_batches: int | None = None) -> tuple[int, float]:
    """The tutorials' training loop; returns (images, seconds)."""
    model.train()
    seen, t = 0, time.perf_counter()
    total_loss = 0.0
    for i, (images, labels) in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        if kind == "mlp":
            images = images.view(images.shape[0], -1)
        optimizer.zero_grad()
        outputs = model(images)
        loss = criterion(outputs, labels)
        loss.backward()
        optimizer.step()
        total_loss += loss.item()
        seen += len(images)
    return seen, time.perf_counter() - t


def seed_evaluate(model, loader) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in loader:
            predicted = model(images).argmax(dim=1)
            correct += int((predicted == labels).sum())
            total += len(labels)
    return correct / total


# ---------------------------------------------------------------- ours


def our_steps(config: TrainConfig, data, max_batches: int, warmup: int, precision: str = "auto") -> tuple[int, float]:
    """fit() for ``warmup + max_batches`` steps; images and seconds of the last ``max_batches``."""
    before = os.environ.get("DIGITLAB_PRECISION")
    os.environ["DIGITLAB_PRECISION"] = precision
    try:
        model = build_model(config)
        t0 = first = None  # fit reports every few batches: time from the first report after the warm-up
        for ev in fit(model, config, data):
            if ev.kind != "batch":
                continue
            if t0 is None and ev.batch >= warmup:
                t0, first = time.perf_counter(), ev.batch
            elif t0 is not None and (ev.batch - first >= max_batches or ev.batch == ev.n_batches):
                seen = (ev.batch - first) * config.batch_size  # (or the epoch ended first: its last batch is smaller)
                if ev.batch == ev.n_batches:
                    seen -= config.batch_size - (task_size(data, config) % config.batch_size or config.batch_size)
                break
        return seen, time.perf_counter() - t0
    finally:
        if before is None:
            os.environ.pop("DIGITLAB_PRECISION", None)
        else:
            os.environ["DIGITLAB_PRECISION"] = before


def conversion_seconds(data, preset: str) -> float:
    """What fit pays once per run before its first step: the training images made the model's float inputs."""
    config = PRESETS[preset]
    images = task_data(data, config, "train")[0]
    t = time.perf_counter()
    model_inputs(images, config)
    return time.perf_counter() - t


# ---------------------------------------------------------------- the three parts


def in_memory_batches(kind: str, loader, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``n`` of the tutorial loader's batches, collected before any step is timed (as the tutorial's
    loop sees them: flattened for the MLP)."""
    batches = []
    for images, labels in loader:
        batches.append((images.view(images.shape[0], -1) if kind == "mlp" else images, labels))
        if len(batches) == n:
            break
    return batches


def taking_turns(kind: str, config: TrainConfig, data, in_memory: list, batches: int,
                 warmup: int) -> tuple[float, float]:
    """Images/s of ours (fit) and of the tutorial's own step on batches already in memory, timed in turns:
    after each of fit's reports (about a 16th of an epoch) the tutorial's loop takes the same
    number of steps on its in-memory batches. Both are timed in the same seconds of the machine, so their
    ratio holds where either's own speed drifts 10-20% from one round to the next on 2 cores.
    Returns (ours, the tutorial's in-memory step) over the ``batches`` steps after ``warmup``."""
    torch.manual_seed(0)
    model, criterion, optimizer = seed_model_and_optimizer(kind)
    model.train()
    ours_s = tutorial_s = 0.0
    ours_n = tutorial_n = done = 0
    tick = time.perf_counter()
    for ev in fit(build_model(config), config, data):
        tock = time.perf_counter()
        if ev.kind != "batch" or ev.batch == ev.n_batches or ev.batch > warmup + batches:
            break  # the epoch's last batch is smaller: stop before it
        counted = ev.batch > warmup
        if counted:
            ours_s, ours_n = ours_s + tock - tick, ours_n + (ev.batch - done) * config.batch_size
        tick = time.perf_counter()
        for images, labels in in_memory[done : ev.batch]:  # the tutorial's loop, as in seed_steps
            optimizer.zero_grad()
            loss = criterion(model(images), labels)
            loss.backward()
            optimizer.step()
            loss.item()
            tutorial_n += len(images) if counted else 0
        done = ev.batch
        tock = time.perf_counter()
        tutorial_s += tock - tick if counted else 0.0
        tick = time.perf_counter()
    return ours_n / ours_s, tutorial_n / tutorial_s


@dataclass
class Speed:
    name: str
    seed_ips: float
    ours_ips: float
    other_ips: float  # ours in the other precision: float32 where auto picks bfloat16, else bfloat16
    other: str
    in_memory_ips: float  # the tutorial's own step on batches already in memory: no data path at all
    turns: list[float]  # ours / the in-memory step, timed in turns, TURNS_PER_ROUND a round
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.ours_ips / self.seed_ips

    @property
    def vs_in_memory(self) -> float:
        """The median of ours / in-memory step over every time the two were timed in turns."""
        return sorted(self.turns)[len(self.turns) // 2]


def whole_blocks(data, config: TrainConfig, warmup: int, batches: int) -> tuple[int, int]:
    """(warm-up, timed) steps moved to the edges of fit's gathered blocks: the timed steps hold whole blocks, each
    with its gather, so they pay their share of gathering (to within a report's steps: timing starts and stops at
    fit's reports). A window that began after a gather would leave it out. As many whole blocks as fit in one
    epoch, at most ``batches``."""
    per_block = max(1, BLOCK_IMAGES // config.batch_size)
    epoch = task_size(data, config) // config.batch_size  # full batches (the last, smaller one is never timed)
    warmup = -(-warmup // per_block) * per_block
    blocks = max(1, min(batches, epoch - warmup) // per_block)
    return warmup, blocks * per_block


def speed(data, root: Path, kind: str, preset: str, batches: int, warmup: int, rounds: int = 5) -> Speed:
    config = PRESETS[preset].with_(epochs=1)
    warmup, batches = whole_blocks(data, config, warmup, batches)
    auto = compute_dtype(config, pick_device())
    other = "fp32" if auto == torch.bfloat16 else "bf16"
    seed_best = ours_best = other_best = in_memory_best = 0.0
    turns = []
    for _ in range(rounds):
        torch.manual_seed(0)
        model, criterion, optimizer = seed_model_and_optimizer(kind)
        train_loader, _ = seed_loaders(root)
        seed_steps(kind, model, criterion, optimizer, train_loader, warmup)
        n, s = seed_steps(kind, model, criterion, optimizer, train_loader, batches)
        seed_best = max(seed_best, n / s)
        in_memory = in_memory_batches(kind, train_loader, warmup + batches)
        this_round = []
        for _ in range(TURNS_PER_ROUND):  # a second or two each: more of them steady the median
            ours, tutorial = taking_turns(kind, config, data, in_memory, batches, warmup)
            ours_best, in_memory_best = max(ours_best, ours), max(in_memory_best, tutorial)
            this_round.append(ours / tutorial)
        del in_memory
        turns += this_round
        n, s = our_steps(config, data, batches, warmup, precision=other)
        other_best = max(other_best, n / s)
        print(f"  {preset}: seed {seed_best:,.0f} img/s, ours {ours_best:,.0f} img/s ({other} {other_best:,.0f}), "
              f"the tutorial's float32 step on batches in memory {in_memory_best:,.0f} img/s; this round, timed in "
              f"turns, ours / in memory: {', '.join(f'{t:.3f}' for t in this_round)}", flush=True)
    note = ("bfloat16 autocast" if auto == torch.bfloat16 else "float32") + (", channels-last" if kind == "cnn" else "")
    optimizer = {"sgd": "SGD", "momentum": "SGD with momentum", "adam": "Adam"}[config.optimizer]
    return Speed(preset, seed_best, ours_best, other_best, other, in_memory_best, turns, f"{note}, fused {optimizer}")


def seed_time_to_target(folder: Path, max_epochs: int) -> tuple[float | None, list[tuple[int, float, float]]]:
    """The DigitCNN tutorial from nothing loaded: wall seconds until an epoch ends at >= 99.0% on test."""
    t = time.perf_counter()
    root = seed_root(folder)
    torch.manual_seed(0)
    train_loader, test_loader = seed_loaders(root)
    model, criterion, optimizer = seed_model_and_optimizer("cnn")
    log = []
    try:
        for epoch in range(1, max_epochs + 1):
            seed_steps("cnn", model, criterion, optimizer, train_loader)
            acc = seed_evaluate(model, test_loader)
            log.append((epoch, acc, time.perf_counter() - t))
            print(f"  seed DigitCNN epoch {epoch}: {acc:.2%} at {log[-1][2]:.1f} s", flush=True)
            if acc >= TARGET:
                return log[-1][2], log
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return None, log


def our_time_to_target(folder: Path, preset: str) -> tuple[float | None, list[tuple[int, float, float]]]:
    t = time.perf_counter()
    data = load_mnist(folder, allow_download=False)
    config = PRESETS[preset]
    model = build_model(config)
    log = []
    for ev in fit(model, config, data):
        if ev.kind == "epoch":
            log.append((ev.epoch, ev.test_accuracy, time.perf_counter() - t))
            print(f"  ours {preset} epoch {ev.epoch}: {ev.test_accuracy:.2%} at {log[-1][2]:.1f} s", flush=True)
            if ev.test_accuracy >= TARGET:
                return log[-1][2], log
    return None, log


ACCURACY_TARGETS = {  # preset: (target on the full test set, what it is measured on)
    "linear-seed": (None, "test 3s and 7s; the seed reports about 93.5% after 20 epochs"),
    "linear-better": (0.98, "test 3s and 7s"),
    "simple_net": (0.97, "10,000 test digits"),
    "mlp-128-64": (0.98, "10,000 test digits"),
    "cnn-seed": (0.989, "10,000 test digits"),
    "cnn-fast": (0.99, "10,000 test digits, in its one epoch"),
    "cnn-best": (0.995, "10,000 test digits"),
}


def accuracy_runs(data, presets: list[str]) -> list[dict]:
    rows = []
    for name in presets:
        config = PRESETS[name]
        model = build_model(config)
        t = time.perf_counter()
        last = None
        for ev in fit(model, config, data):
            if ev.kind == "epoch":
                last = ev
        seconds = time.perf_counter() - t
        target, on = ACCURACY_TARGETS[name]
        rows.append(dict(preset=name, epochs=config.epochs, accuracy=last.test_accuracy, seconds=seconds,
                         target=target, on=on))
        print(f"  {name}: {last.test_accuracy:.2%} after {config.epochs} epochs, {seconds:.1f} s", flush=True)
    return rows


# ---------------------------------------------------------------- report


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=300, help="timed training steps per pipeline, at most (whole gathered blocks, after warm-up)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds for the speed figures (best of each): a "
                    "2-core machine's rounds of the MLP differ by 10-20%%")
    ap.add_argument("--seed-epochs", type=int, default=8, help="most epochs the seed pipeline gets to reach 99.0%%")
    ap.add_argument("--accuracy", action="store_true", help="also train every preset in full")
    ap.add_argument("--presets", default=",".join(ACCURACY_TARGETS), help="presets for --accuracy")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-time", action="store_true")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    folder = Path(os.environ.get("DIGITLAB_DATA_DIR") or ROOT.parent / "shared" / "mnist")
    data = load_mnist(folder, allow_download=False)
    assert data.source.kind == "folder", f"the benchmark needs the full MNIST: {data.source}"
    command = "DIGITLAB_DATA_DIR=../shared/mnist python bench/bench_train.py " + " ".join(sys.argv[1:])
    out = [
        f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {platform.node() or 'machine'} · "
        f"{device_label()} · {os.cpu_count()} cores · torch {torch.__version__}",
        "",
        f"`{command.strip()}`",
        "",
    ]

    if not args.skip_speed:
        print("1. Speed at the same recipe, batch 64", flush=True)
        root = seed_root(folder)
        try:
            rows = [speed(data, root, "mlp", "mlp-128-64", args.batches * 3, args.warmup, args.rounds),
                    speed(data, root, "cnn", "cnn-seed", args.batches, args.warmup, args.rounds)]
        finally:
            shutil.rmtree(root, ignore_errors=True)
        mlp, cnn = rows
        windows = {name: whole_blocks(data, PRESETS[name], args.warmup, n)
                   for name, n in (("mlp-128-64", args.batches * 3), ("cnn-seed", args.batches))}
        out += ["| recipe (batch 64) | seed pipeline img/s | ours img/s | x seed | the tutorial's float32 step on "
                "batches in memory: img/s | ours / that, timed in turns: median (each time) | ours in the other precision: "
                "img/s | target | |",
                "|---|---|---|---|---|---|---|---|---|"]
        checks = {mlp.name: (mlp.vs_in_memory >= 1.0, "ours >= the in-memory step"),
                  cnn.name: (cnn.ratio >= 2.0, ">= 2x the seed pipeline")}
        for r in rows:
            ok, target = checks[r.name]
            out.append(f"| {r.name} ({r.note}) | {r.seed_ips:,.0f} | {r.ours_ips:,.0f} | {r.ratio:.1f}x | "
                       f"{r.in_memory_ips:,.0f} | {r.vs_in_memory:.3f} ({', '.join(f'{t:.3f}' for t in r.turns)}) | "
                       f"{r.other_ips:,.0f} ({r.other}) | {target} | {verdict(ok)} |")
        out += ["", "Ours runs as the app does (DIGITLAB_PRECISION=auto). The in-memory column is the tutorial's own "
                "training step (its nn.Sequential, autograd, torch.optim) on batches already in memory (collected from "
                "its loader first): what the tutorial's code reaches if loading and converting data cost nothing. Ours "
                "and it take turns, the steps between two of fit's reports each (a 16th of an epoch), so both are timed "
                "in the same seconds; the img/s columns are the best round of each, the ratio the median over every "
                f"timing in turns ({TURNS_PER_ROUND} a round). Each pipeline is timed over "
                + ", ".join(f"{name} {n} steps after {w}" for name, (w, n) in windows.items())
                + f": whole blocks of fit's gathers ({BLOCK_IMAGES:,} images), so ours pays for all of its gathering.",
                "Ours converts the training images to float once per run, before its first step ("
                + ", ".join(f"{name} {conversion_seconds(data, name):.2f} s" for name in ("mlp-128-64", "cnn-seed"))
                + "): outside the timed steps here, inside the wall time to 99.0% below.", ""]

    if not args.skip_time:
        print("2. Wall time to 99.0% test accuracy", flush=True)
        ours_s, ours_log = our_time_to_target(folder, "cnn-fast")
        seed_s, seed_log = seed_time_to_target(folder, args.seed_epochs)

        def trail(log):
            return ", ".join(f"epoch {e} {a:.2%} at {s:.1f} s" for e, a, s in log)

        out += ["| pipeline | reached 99.0% after | epochs |", "|---|---|---|",
                f"| seed DigitCNN (Adam 1e-3, batch 64) | "
                f"{f'{seed_s:.1f} s' if seed_s else f'not within {args.seed_epochs} epochs'} | {trail(seed_log)} |",
                f"| ours, cnn-fast | {f'{ours_s:.1f} s' if ours_s else 'not reached'} | {trail(ours_log)} |", ""]
        if ours_s and seed_s:
            out.append(f"Ours reaches 99.0% **{seed_s / ours_s:.1f}x sooner** ({ours_s:.1f} s; target <= 10 s: "
                       f"{verdict(ours_s <= 10)}; >= 8x sooner: {verdict(seed_s / ours_s >= 8)}).")
        elif ours_s:
            total = seed_log[-1][2] if seed_log else float("nan")
            out.append(f"Ours reaches 99.0% in {ours_s:.1f} s ({verdict(ours_s <= 10)}); the seed pipeline had not "
                       f"after {total:.1f} s, so ours is more than {total / ours_s:.1f}x sooner.")
        out.append("")

    if args.accuracy:
        print("3. Every preset in full", flush=True)
        rows = accuracy_runs(data, [p.strip() for p in args.presets.split(",") if p.strip()])
        out += ["| preset | epochs | test accuracy | on | target | seconds | |", "|---|---|---|---|---|---|---|"]
        for r in rows:
            tgt = f">= {r['target']:.1%}" if r["target"] else "near the seed"
            ok = verdict(r["accuracy"] >= r["target"]) if r["target"] else ""
            out.append(f"| {r['preset']} | {r['epochs']} | {r['accuracy']:.2%} | {r['on']} | {tgt} | "
                       f"{r['seconds']:.1f} | {ok} |")
        out.append("")

    report = "\n".join(out)
    print("\n" + report)
    if not args.no_record:
        record("## Training", report)


if __name__ == "__main__":
    main()
