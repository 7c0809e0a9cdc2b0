"""Pure helpers behind the Data Explorer: choosing images and turning them into views.

Kept out of the page so they can be tested and shown (``ui.show_code``) as the real code that runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from digitlab import viz
from digitlab.data import MNIST, NORMALISATIONS, to_float

NORM_LABELS = {
    "none": "ToTensor()  (0..1)",
    "half": "Normalize((0.5,), (0.5,))  (-1..1)",
    "mnist": "Normalize((0.1307,), (0.3081,))  (MNIST's mean and std)",
}


def sample_indices(labels: torch.Tensor, digit: int | None, n: int, seed: int) -> torch.Tensor:
    """``n`` random indices, of one digit or of any; the seed makes a reshuffle reproducible."""
    pool = torch.arange(len(labels)) if digit is None else (labels == digit).nonzero().squeeze(1)
    gen = torch.Generator().manual_seed(seed)
    return pool[torch.randperm(len(pool), generator=gen)[: min(n, len(pool))]]


def tile(images: torch.Tensor, cols: int, gap: int = 2) -> np.ndarray:
    """Many 28x28 images as ONE array with a white gap between them: one heatmap instead of 60 subplots."""
    n = len(images)
    rows = max(1, -(-n // cols))
    out = np.zeros((rows * (28 + gap) - gap, cols * (28 + gap) - gap), dtype=np.float32)
    for i, im in enumerate(images.numpy() if isinstance(images, torch.Tensor) else images):
        r, c = divmod(i, cols)
        out[r * (28 + gap): r * (28 + gap) + 28, c * (28 + gap): c * (28 + gap) + 28] = im
    return out


def first_index_of(labels: torch.Tensor, digit: int, nth: int = 0) -> int:
    """Index of the ``nth`` image of ``digit`` (wrapping round), so 'show me a 3' always finds one."""
    idx = (labels == digit).nonzero().squeeze(1)
    if len(idx) == 0:
        raise ValueError(f"there is no {digit} in this split")
    return int(idx[nth % len(idx)])


def pixel_frame(image: torch.Tensor) -> pd.DataFrame:
    """The seeds' view: a 28x28 DataFrame of the 0-255 values, to style with a grey gradient."""
    return pd.DataFrame(image.numpy().astype(int))


def styled_pixels(image: torch.Tensor, font_px: int = 7):
    """``df.style.background_gradient('Greys')``: numbers and ink at the same time (cells sized to the font)."""
    cell_w, cell_h = round(font_px * 2.4), round(font_px * 2.1)
    return (
        pixel_frame(image)
        .style.background_gradient("Greys", vmin=0, vmax=255, axis=None)
        .set_properties(**{"font-size": f"{font_px}px", "padding": "0px", "text-align": "center",
                           "width": f"{cell_w}px", "min-width": f"{cell_w}px", "height": f"{cell_h}px",
                           "line-height": f"{cell_h}px", "border": "none", "font-family": "monospace"})
        .set_table_styles([{"selector": "", "props": "border-collapse: collapse; margin: 0;"},
                           {"selector": "th", "props": f"font-size: {font_px}px; color: #999; padding: 0 2px; "
                                                       "border: none;"}])
    )


def pixel_table_html(data: MNIST, split: str, index: int, font_px: int) -> str:
    """The shaded pixel table of one image as HTML, at a font size (16 px and up reads from the back of a room)."""
    return styled_pixels(data.split(split)[0][index], font_px).to_html()


def flat_vector(image: torch.Tensor) -> torch.Tensor:
    """The image as a linear model or an MLP sees it: 784 numbers in a row."""
    return image.reshape(-1)


def normalisation_table(image: torch.Tensor) -> pd.DataFrame:
    """Raw 0-255 against each normalisation: range, mean and std of this one image."""
    rows = [{"transform": "raw uint8", "min": float(image.min()), "max": float(image.max()),
             "mean": float(image.float().mean()), "std": float(image.float().std())}]
    for name in NORMALISATIONS:
        x = to_float(image.unsqueeze(0), name)
        rows.append({"transform": NORM_LABELS[name], "min": float(x.min()), "max": float(x.max()),
                     "mean": float(x.mean()), "std": float(x.std())})
    return pd.DataFrame(rows)


IDEAL_PAIRS = {"mnist": (3, 7), "fashion": (6, 0)}  # the pairs the Linear stage opens on (ui.pickers.DEFAULT_PAIRS)


def ideal_pair_text(data: MNIST) -> str:
    """Which two averages the Linear stage's baseline starts with, in this dataset's names."""
    yes, no = IDEAL_PAIRS.get(data.spec.key, (3, 7))
    return f"on the Linear stage, the ideal {data.classes[yes]} against the ideal {data.classes[no]}"


def normalisation_note(data: MNIST, table: pd.DataFrame) -> str:
    """What the table's numbers are: one image's, so 'mean 0, std 1' is not what its row shows; what the whole
    training set gets from MNIST's 0.1307 and 0.3081."""
    stats = dataset_stats(data, "train")
    mean, std = NORMALISATIONS["mnist"]
    row = table[table["transform"] == NORM_LABELS["mnist"]].iloc[0]
    whole = ("every MNIST training pixel together gets mean 0 and std 1" if data.spec.key == "mnist" else
             f"on {data.spec.title}, whose own mean and std are {stats['mean']:.4f} and {stats['std']:.4f}, every "
             f"training pixel together gets mean {(stats['mean'] - mean) / std:.2f} and std {stats['std'] / std:.2f}")
    ink = "more" if row["mean"] > 0 else "less"
    return (f"These are this one image's numbers. With MNIST's 0.1307 and 0.3081 this image gets mean "
            f"{row['mean']:.3f} and std {row['std']:.3f}, not 0 and 1: it has {ink} ink than the average MNIST image. "
            f"It is the whole set that is centred: {whole}.")


def dataset_stats(data: MNIST, split: str = "train") -> dict[str, float]:
    """Mean and std of every pixel of a split, in 0..1: where 0.1307 and 0.3081 come from."""
    hist = data.pixel_histogram(split).double()
    values = torch.arange(256, dtype=torch.float64) / 255.0
    total = hist.sum()
    mean = float((hist * values).sum() / total)
    std = float(((hist * (values - mean) ** 2).sum() / total).sqrt())
    return {"mean": mean, "std": std}


# ---------------------------------------------------------------- the page's views, one function per picture
# Each takes the dataset and plain values, so the Streamlit layer can compute it once and share it (ui.shared).


def counts_figure(data: MNIST):
    """Images per class in the training and test sets, each bar named by its class."""
    fig = viz.class_counts(data.class_counts("train"), data.class_counts("test"))
    return fig.update_traces(x=list(data.classes)).update_layout(xaxis_title=data.spec.noun)


def sample_sheet(data: MNIST, split: str, digit: int | None, seed: int, n: int = 60, cols: int = 15):
    """``n`` random images of a split (of one class, or any) as one tiled heatmap, and their class names in order."""
    images, labels = data.split(split)
    picked = sample_indices(labels, digit, n, seed)
    what = "" if digit is None else f" of the {data.spec.noun} {data.classes[digit]}"
    return viz.tiled_images(tile(images[picked], cols=cols), title=f"{n} random {split} images{what}"), \
        [data.classes[int(x)] for x in labels[picked]]


def means_figure(data: MNIST):
    """The average training image of each class, side by side, each named below it."""
    fig = viz.tiled_images(tile(data.mean_images("train"), cols=10, gap=3), title="mean image of each class",
                           height=230 if data.spec.key == "mnist" else 250)
    return fig.update_xaxes(tickvals=[c * 31 + 14 for c in range(10)], ticktext=list(data.classes),
                            showticklabels=True, tickangle=0)


def histogram_figure(data: MNIST):
    return viz.pixel_histogram(data.pixel_histogram("train"))


def image_views(data: MNIST, split: str, index: int) -> dict:
    """One image every way the page shows it: heatmap, the seeds' shaded table as HTML, the 784-long row,
    the normalisation table and one heatmap per normalisation."""
    image = data.split(split)[0][index]
    normalised = {}
    for name in NORMALISATIONS:
        x = to_float(image.unsqueeze(0), name)[0]
        normalised[name] = viz.image_heatmap(x, title=NORM_LABELS[name].split("  ")[0], zmin=float(x.min()),
                                             zmax=float(x.max()), height=300)
    return {
        "heatmap": viz.image_heatmap(image, title="Hover for each pixel's value", height=460),
        "table_html": styled_pixels(image).to_html(),
        "vector": viz.vector_strip(flat_vector(image), title=f"image {index} as a 784-long vector"),
        "norm_table": normalisation_table(image),
        "normalised": normalised,
    }
