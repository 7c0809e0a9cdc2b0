"""Which stored models a page shows first: the leaderboard's order, the best of each kind, a picker's order,
the stages' order side by side (linear, MLP, CNN), a heading for each model, and each kind's best on MNIST beside
Fashion-MNIST."""

from __future__ import annotations

from .data import DATASETS
from .models import ModelInfo


def stored_accuracy(info: ModelInfo) -> float:
    """The test accuracy training recorded for a model; -1 where there is none, so it sorts last."""
    return info.accuracy if info.accuracy is not None else -1.0


def ranked(infos: list[ModelInfo]) -> list[ModelInfo]:
    """The leaderboard's order: ten-class models first, then yes/no pairs such as 3 vs 7 (a different question),
    best accuracy first."""
    return sorted(infos, key=lambda i: (i.config.pair is not None, -stored_accuracy(i)))


# The kinds a page shows one of each: a yes/no pair (3 or 7?, any architecture), then linear, MLP, CNN on ten classes.
KINDS = {"pair": "two classes", "linear": "linear", "mlp": "MLP", "cnn": "CNN"}


def kind_of(info: ModelInfo) -> str:
    """The kind a page picks the best of: a yes/no pair model (any architecture), or linear, MLP, CNN on ten classes."""
    return "pair" if info.config.pair else info.config.kind


def best_of_each_kind(infos: list[ModelInfo], limit: int = 4, kinds: tuple[str, ...] = tuple(KINDS)) -> list[ModelInfo]:
    """What a page shows before anyone picks: the most accurate model of each kind (3 or 7?, linear, MLP, CNN),
    at most ``limit``; a model below 50% never (a broken run answering '8, 12% sure' to everything)."""
    best: dict[str, ModelInfo] = {}
    for info in ranked(infos):
        if not info.broken and kind_of(info) in kinds:
            best.setdefault(kind_of(info), info)
    return [best[k] for k in kinds if k in best][:limit]


def picker_order(infos: list[ModelInfo]) -> list[ModelInfo]:
    """Every model for a picker: the best of each kind first (ten-digit models before 3-vs-7), then the rest best
    first, the broken ones last."""
    first = ranked(best_of_each_kind(infos, limit=len(KINDS)))  # the best ten-digit model leads
    rest = [i for i in ranked(infos) if i.id not in {f.id for f in first}]
    return first + [i for i in rest if not i.broken] + [i for i in rest if i.broken]


def dataset_comparison(infos: list[ModelInfo]) -> list[dict]:
    """Each kind's best test accuracy on each dataset, side by side, where a kind has models on both: the gap that
    opens from MNIST to Fashion-MNIST. A yes/no pair counts as one kind (its pair may differ: named in "pairs")."""
    best: dict[tuple[str, str], ModelInfo] = {}
    for info in ranked(infos):
        if not info.broken:
            best.setdefault((kind_of(info), info.config.dataset), info)
    rows = []
    for kind, label in KINDS.items():
        by_dataset = {d: best[kind, d] for d in DATASETS if (kind, d) in best}
        if len(by_dataset) < len(DATASETS):
            continue
        row = {"kind": label if kind != "pair" else "two classes (yes/no)"}
        row |= {DATASETS[d].title: i.accuracy for d, i in by_dataset.items()}
        accs = [i.accuracy for i in by_dataset.values()]
        row["gap (points)"] = round(100 * (accs[0] - accs[-1]), 1)
        row["best models"] = " · ".join(f"{DATASETS[d].title}: {i.config.preset}"
                                        + (f" ({i.config.question[:-1]})" if i.config.pair else "")
                                        for d, i in by_dataset.items())
        rows.append(row)
    return rows


def display_names(infos: list[ModelInfo]) -> dict[str, str]:
    """A heading for each model: its title, plus the id where two runs would look alike."""
    names = {i.id: i.title for i in infos}
    return {k: f"{v} · {k}" if list(names.values()).count(v) > 1 else v for k, v in names.items()}


def other_model(infos: list[ModelInfo], first_id: str | None) -> str | None:
    """The model a comparison starts on: the newest one that is not the first."""
    return next((i.id for i in infos if i.id != first_id), None)


_KIND_ORDER = {"linear": 0, "mlp": 1, "cnn": 2}


def side_by_side(infos: list[ModelInfo], best_only: bool = False) -> list[ModelInfo]:
    """Stored models in the order the stages go: linear first, then MLPs, then CNNs, best first within each.

    ``best_only`` keeps the best of each kind (and task: the linear model answers only "3 or 7?").
    """
    ordered = sorted(infos, key=lambda i: (_KIND_ORDER.get(i.config.kind, 9), i.config.task, -stored_accuracy(i)))
    if not best_only:
        return ordered
    best: dict[tuple[str, str], ModelInfo] = {}
    for i in ordered:
        best.setdefault((i.config.kind, i.config.task), i)
    return list(best.values())
