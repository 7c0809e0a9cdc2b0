"""Command line: ``python -m digitlab <group> <command>``.

Each command group is one ``add_*_commands(subparsers)`` function that registers its parsers and
sets ``func`` on them; ``main`` just dispatches. Adding a group is adding one such function to GROUPS.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from digitlab import data as data_mod
from digitlab import data_files, serve, settings
from digitlab.config import FIELDS

# ---------------------------------------------------------------- data


def _progress_bar(name: str, done: int, total: int | None) -> None:
    """A text progress bar on stderr, redrawn in place."""
    if total:
        frac = done / total
        bar = "#" * int(frac * 30)
        unit, scale = ("MB", 1e6) if total >= 1e5 else ("kB", 1e3)
        sys.stderr.write(f"\r{name:<32} [{bar:<30}] {done / scale:6.2f}/{total / scale:.2f} {unit}")
        if done >= total:
            sys.stderr.write("\n")
    else:
        sys.stderr.write(f"\r{name:<32} {done / 1e6:6.2f} MB")
    sys.stderr.flush()


def cmd_data_info(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    data = data_mod.load_dataset(args.dataset, args.data_dir, allow_download=False if args.offline else None,
                                 progress=_progress_bar)
    seconds = time.perf_counter() - started
    print(f"source: {data.source.label}")
    for reason in data.source.skipped:
        print(f"  skipped {reason}")
    print(f"load time: {seconds:.2f} s")
    print(f"fingerprint: {data.fingerprint()}")
    width = max(5, *(len(c) for c in data.classes))
    print(f"{'digit' if args.dataset == 'mnist' else 'class':>{width}} {'train':>7} {'test':>7}")
    train, test = data.class_counts("train"), data.class_counts("test")
    for d, name in enumerate(data.classes):
        print(f"{name:>{width}} {train[d]:>7,} {test[d]:>7,}")
    print(f"{'all':>{width}} {sum(train):>7,} {sum(test):>7,}")
    folder = Path(data.source.path)  # every source ends as a folder of IDX files, a download too
    title = data.spec.title
    print(f"content checksums (md5 of the uncompressed files in {folder}):")
    for stem, (digest, canonical) in data_files.content_checksums(folder, args.dataset).items():
        print(f"  {stem:<26} {digest}  {f'canonical {title}' if canonical else f'NOT the canonical {title} file'}")
    return 0


def cmd_data_make_sample(args: argparse.Namespace) -> int:
    full = data_mod.load_dataset(args.dataset, args.data_dir, allow_download=not args.offline, progress=_progress_bar)
    if full.is_sample or len(full.train_images) != data_mod.FULL_COUNTS["train"]:
        print(f"make-sample needs the full {full.spec.title}, but got {full.source.label}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else full.spec.sample_dir
    sizes = data_files.make_sample(full, out, per_class=(args.train_per_digit, args.test_per_digit), seed=args.seed)
    total = sum(sizes.values())
    (out / "README.md").write_text(sample_readme(full, sizes, args), encoding="utf-8")
    for name, size in sizes.items():
        print(f"  {name:<32} {size:>9,} bytes")
    print(f"wrote {out} ({total / 1e6:.2f} MB) from {full.source.label}")
    return 0


def template(name: str) -> str:
    """A text shipped as package data in digitlab/templates/ (listed in pyproject.toml)."""
    return resources.files("digitlab").joinpath("templates", name).read_text(encoding="utf-8")


def sample_readme(full: data_mod.MNIST, sizes: dict[str, int], args: argparse.Namespace) -> str:
    """Provenance and credit for the files shipped in digitlab/sample/ (or digitlab/sample-fashion/), and the MIT
    licence for Fashion-MNIST's: templates/sample-readme-<mnist|fashion>.md filled in."""
    files = "\n".join(f"- `{n}`: {s:,} bytes" for n, s in sizes.items())
    fashion = full.spec.key == "fashion"
    return template(f"sample-readme-{'fashion' if fashion else 'mnist'}.md").format(
        train_per_digit=args.train_per_digit, test_per_digit=args.test_per_digit, seed=args.seed,
        fingerprint=full.fingerprint(), files=files, megabytes=sum(sizes.values()) / 1e6,
        license=template("fashion-mnist-license.txt") if fashion else "")


def cmd_data_fetch(args: argparse.Namespace) -> int:
    spec = data_mod.dataset_spec(args.dataset)
    target = Path(args.to) if args.to else spec.cache(data_mod.cache_dir())
    try:
        data_mod.download(target, progress=_progress_bar, dataset=args.dataset)
    except data_mod.DataError as e:
        print(f"\n{e}", file=sys.stderr)
        return 1
    print(f"{spec.title} is in {target}")
    return 0


def add_data_commands(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("data", help="MNIST or Fashion-MNIST: where it comes from, its checksums, the bundled sample")
    cmds = group.add_subparsers(dest="command", required=True)

    info = cmds.add_parser("info", help="source, counts per class, content checksums, load time")
    dataset_flag(info)
    info.add_argument("--data-dir", default=None, help="folder with the four IDX files (default: DIGITLAB_DATA_DIR, "
                      "or DIGITLAB_FASHION_DIR with --dataset fashion)")
    info.add_argument("--offline", action="store_true", help="never download")
    info.set_defaults(func=cmd_data_info)

    sample = cmds.add_parser("make-sample", help="write the stratified sample into digitlab/sample/ "
                             "(digitlab/sample-fashion/ with --dataset fashion)")
    dataset_flag(sample)
    sample.add_argument("--data-dir", default=None)
    sample.add_argument("--offline", action="store_true")
    sample.add_argument("--out", default=None, help="default: where the package looks for that dataset's sample")
    sample.add_argument("--train-per-digit", type=int, default=500)
    sample.add_argument("--test-per-digit", type=int, default=100)
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(func=cmd_data_make_sample)

    fetch = cmds.add_parser("fetch", help="download the full MNIST or Fashion-MNIST (all four files or nothing)")
    dataset_flag(fetch)
    fetch.add_argument("--to", default=None, help="target folder (default: DIGITLAB_CACHE_DIR or ./data)")
    fetch.set_defaults(func=cmd_data_fetch)


def dataset_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=FIELDS["dataset"].choices, default="mnist",
                        help=FIELDS["dataset"].meaning + " (default: mnist)")


def schema_option(parser: argparse.ArgumentParser, flag: str, name: str) -> None:
    """An option that sets config field ``name``: read and checked by the config's schema (config.FIELDS), so a value
    outside its bounds is refused here with the message a page or a link gives."""
    field = FIELDS[name]

    def parse(text: str):
        try:
            return field.parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parser.add_argument(flag, type=parse, default=None, metavar=name.upper(),
                        help=f"{field.meaning}: {field.bounds} (default: the preset's)")


# ---------------------------------------------------------------- train, models

DEFAULT_PRESET = {"linear": "linear-better", "mlp": "simple_net", "cnn": "cnn-seed"}


def preset_named(kind: str, preset: str | None) -> str | None:
    """The preset asked for (or the kind's default); None, with the choices on stderr, if there is no such one."""
    from digitlab.models import PRESETS

    name = preset or DEFAULT_PRESET[kind]
    if name not in PRESETS or PRESETS[name].kind != kind:
        choices = ", ".join(n for n, c in PRESETS.items() if c.kind == kind)
        print(f"error: no {kind} preset {name!r}; choose from {choices}", file=sys.stderr)
        return None
    return name


def cmd_train(args: argparse.Namespace) -> int:
    """One run, trained here through the in-process runner: the same run, records, save and analysis as the
    class's training process makes."""
    from tqdm import tqdm

    from digitlab.models import preset_for
    from digitlab.runs.runners.inline import InlineRunner
    from digitlab.runs.spec import EpochDone, Finished, JobSpec, Progress
    from digitlab.runs.steering import Steering
    from digitlab.store import ModelStore

    name = preset_named(args.kind, args.preset)
    if name is None:
        return 2
    changes = {k: v for k, v in {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                                  "train_limit": args.train_limit, "seed": args.seed}.items() if v is not None}
    config = preset_for(name, args.dataset).with_(**changes)  # the recipe as it runs on that dataset
    store = ModelStore()
    store.check_writable()  # before the data and the minutes of training: a read-only folder is said now
    data = data_mod.load_dataset(args.dataset, allow_download=False if args.offline else None, progress=_progress_bar)
    print(f"data: {data.source.label}")
    print(f"training {config.title} ({name}) for {config.epochs} epoch(s)")
    bar, result = None, None

    def show(msg) -> None:
        nonlocal bar, result
        if isinstance(msg, Progress) and msg.event.kind == "batch":
            ev = msg.event
            if bar is None:
                bar = tqdm(total=ev.n_batches, desc=f"epoch {ev.epoch}/{ev.epochs}", unit="batch", leave=False)
            bar.n = ev.batch
            bar.set_postfix(loss=f"{ev.loss:.4f}", img_s=f"{ev.images_per_s:,.0f}")
        elif isinstance(msg, EpochDone):
            if bar is not None:
                bar.close()
                bar = None
            r = msg.record
            print(f"epoch {r['epoch']}/{config.epochs}: test accuracy {r['test_accuracy']:.2%}, "
                  f"test loss {r['test_loss']:.4f}, {r['images_per_s']:,.0f} images/s, {r['seconds']:.1f} s")
        elif isinstance(msg, Finished):
            result = msg

    ahead = "all" if settings.get("DIGITLAB_ANALYSE_AHEAD") else "first"
    InlineRunner(publish=False, analyse=ahead).run(JobSpec.of("cli", config, data, store), data, Steering(), show)
    if bar is not None:
        bar.close()
    if result.state != "done":
        print(f"error: {result.error or result.message}", file=sys.stderr)
        return 1
    print(f"saved {result.model_id} in {store.root}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from digitlab.store import ModelStore

    store = ModelStore()
    for line in store.tidy():  # the leftovers of saves that never finished
        print(line)
    infos, problems = store.scan()
    if not infos:
        print(f"no trained models in {store.root}")
    for i in infos:
        acc = i.metrics.get("test_accuracy")
        acc_txt = f"{acc:.2%}" if isinstance(acc, (int, float)) else "?"
        print(f"{i.id:<48} {i.config.title:<28} {acc_txt:>8} {i.parameters:>9,} params {i.train_seconds:7.1f} s")
    for p in problems:
        print(f"skipped {p.name}: {p.reason}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from digitlab import metrics
    from digitlab.store import ModelStore, StoreError

    store = ModelStore()
    infos = [i for i in store.list() if args.dataset is None or i.config.dataset == args.dataset]
    if not infos and not args.model:
        on = f" on {data_mod.dataset_spec(args.dataset).title}" if args.dataset else ""
        print(f"no models trained{on} in {store.root}: train one with python -m digitlab train ...", file=sys.stderr)
        return 1
    model_id = args.model or max(infos, key=lambda i: i.created).id
    try:
        model, info = store.load(model_id)
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    dataset = info.config.dataset  # a model is scored on the dataset it was trained on
    if args.dataset not in (None, dataset):
        print(f"error: {info.id} was trained on {data_mod.dataset_spec(dataset).title}, not "
              f"{data_mod.dataset_spec(args.dataset).title}: its answers are {dataset} classes", file=sys.stderr)
        return 2
    data = data_mod.load_dataset(dataset, allow_download=False if args.offline else None, progress=_progress_bar)
    pred = metrics.predict(model, info.config, data)
    cm = metrics.confusion_matrix(pred.targets, pred.predicted, len(pred.class_names))
    print(f"model: {info.id} ({info.config.title}, {info.config.preset})")
    print(f"data: {data.source.label}")
    print(f"test accuracy: {pred.accuracy:.2%} on {len(pred.targets):,} test images")
    w = max(5, *(len(c) for c in pred.class_names))  # "Ankle boot" is wider than a digit
    print(f"{'class':>{w}} {'precision':>9} {'recall':>7} {'F1':>6} {'images':>7}")
    for row in metrics.per_class_scores(cm, pred.class_names):
        print(f"{row['class']:>{w}} {row['precision']:>9.2%} {row['recall']:>7.2%} {row['F1']:>6.3f} "
              f"{row['test images']:>7,}")
    print("confusion matrix (rows: true class, columns: predicted):")
    print(" " * (w + 1) + " ".join(f"{c[:5]:>5}" for c in pred.class_names))
    for name, row in zip(pred.class_names, cm.tolist(), strict=True):
        print(f"{name:>{w}} " + " ".join(f"{v:>5}" for v in row))
    return 0


def add_train_commands(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train a model with a progress bar and save it to the model store")
    train.add_argument("kind", choices=FIELDS["kind"].choices, help=FIELDS["kind"].meaning)
    dataset_flag(train)
    train.add_argument("--preset", default=None, help="a preset of that kind (default: the tutorial's)")
    for flag, name in (("--epochs", "epochs"), ("--lr", "lr"), ("--batch-size", "batch_size"),
                       ("--train-limit", "train_limit"), ("--seed", "seed")):
        schema_option(train, flag, name)
    train.add_argument("--offline", action="store_true", help="never download")
    train.set_defaults(func=cmd_train)
    models = sub.add_parser("models", help="list the trained models in the store (DIGITLAB_MODEL_DIR)")
    models.set_defaults(func=cmd_models)
    evaluate = sub.add_parser("evaluate", help="score a stored model on the test set: accuracy, per class, confusion")
    evaluate.add_argument("model", nargs="?", default=None, help="a model id from 'models' (default: the newest)")
    evaluate.add_argument("--dataset", choices=FIELDS["dataset"].choices, default=None,
                          help="only models of this dataset (default: any; a model is scored on its own dataset)")
    evaluate.add_argument("--offline", action="store_true", help="never download")
    evaluate.set_defaults(func=cmd_evaluate)


# ---------------------------------------------------------------- lr-find


def cmd_lr_find(args: argparse.Namespace) -> int:
    """The learning-rate finder from a preset's untrained model: the curve as text, the suggestion, nothing saved.
    The sweep is a run of kind lr_find, here through the in-process runner (a page queues the same run)."""
    from digitlab.lr_find import LRFinding
    from digitlab.models import PRESETS
    from digitlab.runs.runners.inline import InlineRunner
    from digitlab.runs.spec import Finished, JobSpec
    from digitlab.runs.steering import Steering

    name = preset_named(args.kind, args.preset)
    if name is None:
        return 2
    config = PRESETS[name]
    data = data_mod.load_mnist(allow_download=False if args.offline else None, progress=_progress_bar)
    print(f"data: {data.source.label}")
    said: list = []
    InlineRunner(publish=False, analyse="none").run(JobSpec.of("cli-lr-find", config, data, kind="lr_find"), data,
                                                    Steering(), said.append)
    finished = next(m for m in said if isinstance(m, Finished))
    if finished.state != "done":
        print(f"error: {finished.error or finished.message}", file=sys.stderr)
        return 1
    found = LRFinding(**finished.result)
    print(f"{'learning rate':>13}  smoothed loss")
    for lr, loss in list(zip(found.lrs, found.losses))[:: max(1, len(found.lrs) // 20)]:
        print(f"{lr:>13.2e}  {loss:.4f}")
    print(f"{len(found.lrs)} batches in {found.seconds:.1f} s from {config.title} ({name}); the swept model is thrown away")
    print(f"suggested learning rate: {found.suggestion:.2g} ({found.rule}); steepest fall at {found.steepest:.2g}; "
          f"the preset trains at {config.lr:g}")
    return 0


def add_lr_find_commands(sub: argparse._SubParsersAction) -> None:
    finder = sub.add_parser("lr-find", help="the learning-rate finder: sweep a preset's rate, print the suggestion")
    finder.add_argument("kind", choices=["mlp", "cnn"])
    finder.add_argument("--preset", default=None, help="a preset of that kind (default: the tutorial's)")
    finder.add_argument("--offline", action="store_true", help="never download")
    finder.set_defaults(func=cmd_lr_find)


# ---------------------------------------------------------------- serve


def serve_command(room: bool, port: int) -> list[str]:
    """``streamlit run app.py`` for this laptop only, or with ``room`` for the room's network, accepting only the
    laptop's own names in the Host header."""
    cmd = [sys.executable, "-m", "streamlit", "run", str(Path(__file__).resolve().parent.parent / "app.py"),
           "--server.address", "0.0.0.0" if room else "127.0.0.1", "--server.port", str(port)]
    for name in serve.laptop_names():
        cmd += ["--server.allowedHosts", name]
    return cmd


def cmd_serve(args: argparse.Namespace) -> int:
    if not (serve.ROOT / "app.py").is_file():  # `pip install .` installs the package, not the app's pages
        print(f"error: the app (app.py and pages/) is not beside this digitlab package ({serve.ROOT}): `serve` runs "
              "from a checkout of DigitLab (git clone, then pip install -e . or pip install -r requirements.txt)",
              file=sys.stderr)
        return 1
    if args.web:  # a school's server: N web processes behind HAProxy, one address
        return serve.run(args.web, args.port, args.room, serve.laptop_names() if args.room else (), args.stats_port,
                         args.tls_cert, args.logs)
    cmd = serve_command(args.room, args.port)
    names = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--server.allowedHosts"]
    where = "the room's network" if args.room else "this laptop only"
    print(f"DigitLab on {where}, port {args.port}; accepted names: {', '.join(names)}")
    if not settings.is_set("DIGITLAB_TEACHER_KEY"):
        print("no DIGITLAB_TEACHER_KEY set: nobody can manage the class from a browser (see the README)")
    sys.stdout.flush()  # exec replaces the process: what is still buffered would be lost
    os.execv(cmd[0], cmd)  # the server takes this process's place: Ctrl+C stops it as before
    return 0


def add_serve_commands(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("serve", help="start the server: this laptop only, or --room for the room's network")
    parser.add_argument("--room", action="store_true",
                        help="listen on the room's network (every interface), accepting the laptop's own names")
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--web", type=int, default=0, metavar="N",
                        help="run N web processes behind HAProxy on the one port (a school's server; see the README)")
    serve.add_arguments(parser)  # --stats-port, --tls-cert, --logs: with --web
    parser.set_defaults(func=cmd_serve)


# ---------------------------------------------------------------- export


def cmd_export(args: argparse.Namespace) -> int:
    from digitlab import export
    from digitlab.store import ModelStore

    try:
        path = export.write_zip(ModelStore(), args.model_id, Path(args.out))
    except OSError as e:  # a folder it cannot write to: one line, as the page shows it (a StoreError: main says it)
        print(f"error: the zip could not be written to {args.out}: {e.strerror or e}", file=sys.stderr)
        return 1
    import zipfile

    with zipfile.ZipFile(path) as z:
        names = ", ".join(Path(n).name for n in z.namelist())
    print(f"{path} ({path.stat().st_size / 1e3:,.0f} kB): {names}")
    return 0


def add_export_commands(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("export", help="a stored model as one zip: weights, ONNX, train.py, predict.py, README")
    parser.add_argument("model_id")
    parser.add_argument("--out", default=".", metavar="FOLDER", help="where the zip goes (default: here)")
    parser.set_defaults(func=cmd_export)


# ---------------------------------------------------------------- entry point

GROUPS: list[Callable[[argparse._SubParsersAction], None]] = [add_data_commands, add_train_commands,
                                                              add_lr_find_commands, add_serve_commands,
                                                              add_export_commands]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m digitlab", description="DigitLab from the command line")
    sub = parser.add_subparsers(dest="group", required=True)
    for add in GROUPS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from digitlab.store import StoreError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (data_mod.DataError, StoreError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
