"""Canvas drawings and photos -> MNIST-style 28x28 digits, keeping every step so the page can show it.

MNIST digits are light ink on black, the ink's bounding box scaled so its longer side is 20 px,
then placed in a 28x28 frame by its centre of mass. A model trained on MNIST only answers well
on drawings that went through the same steps, so the Sketch Pad does exactly these, in order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps

from .data import NORMALISATIONS
from .images import ALLOWED_FORMATS, MAX_PIXELS, MAX_UPLOAD_BYTES, WORK_SIDE, ImageError, open_image  # noqa: F401
from .models import PRESETS, ModelInfo, TrainConfig
from .train import predict_proba

BOX = 20  # MNIST: the longer side of the digit
FRAME = 28
MIN_CONTRAST = 40  # brightest minus darkest (0..255) below this: nothing is drawn


PreprocessError = ImageError  # a problem with what the user gave us, in words the user can act on


@dataclass
class Step:
    name: str
    image: np.ndarray  # uint8 [H, W], small enough to show
    note: str = ""


@dataclass
class Processed:
    """Every step from the input to the 28x28 digit; ``image`` is None when there is no ink."""

    steps: list[Step] = field(default_factory=list)
    image: np.ndarray | None = None  # uint8 [28, 28], light ink on black, like MNIST
    inverted: bool = False
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def empty(self) -> bool:
        return self.image is None


# ---------------------------------------------------------------- input -> grayscale


def _thumb(a: np.ndarray, side: int = 140) -> np.ndarray:
    """A small copy for display (the page shows each step as a small image)."""
    h, w = a.shape
    if max(h, w) <= side:
        return a.copy()
    s = side / max(h, w)
    im = Image.fromarray(a).resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR)
    return np.asarray(im)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def rgba_to_gray(rgba: np.ndarray) -> tuple[np.ndarray, str]:
    """RGBA -> grayscale. Transparent parts become the colour that contrasts with the ink.

    A transparent PNG of dark ink looks like ink on white in any viewer, and the canvas may hand
    back light strokes on a transparent layer: so the background is chosen opposite to the ink.
    """
    a = np.asarray(rgba)
    if a.ndim == 2:
        return a.astype(np.uint8), ""
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise PreprocessError(f"Expected an RGB or RGBA image, got an array of shape {a.shape}.")
    lum = _luminance(a)
    if a.shape[2] == 3:
        return np.clip(lum, 0, 255).astype(np.uint8), ""
    alpha = a[..., 3].astype(np.float32) / 255.0
    if alpha.min() > 0.99:
        return np.clip(lum, 0, 255).astype(np.uint8), ""
    opaque = alpha > 0.5
    ink_is_light = bool(opaque.any() and lum[opaque].mean() > 127)
    bg = 0.0 if ink_is_light else 255.0
    gray = lum * alpha + bg * (1 - alpha)
    note = f"transparent parts filled with {'black' if ink_is_light else 'white'} (opposite to the ink)"
    return np.clip(gray, 0, 255).astype(np.uint8), note


def load_upload(payload: bytes) -> tuple[np.ndarray, list[str]]:
    """Uploaded bytes -> grayscale uint8, refusing what is not a plain PNG, JPEG or WebP photo or scan."""
    notes: list[str] = []
    im, full_size = open_image(payload)
    if max(full_size) > WORK_SIDE:  # shrunk first, so turning it copies a small image, not a large one
        notes.append(f"shrunk from {full_size[0]}x{full_size[1]} to at most {WORK_SIDE} px")
        im.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.LANCZOS)
    im = ImageOps.exif_transpose(im)  # phone photos: turn them the way the camera was held
    has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
    if has_alpha:
        gray, note = rgba_to_gray(np.asarray(im.convert("RGBA")))
        if note:
            notes.append(note)
        return gray, notes
    return np.asarray(im.convert("L")), notes


# ---------------------------------------------------------------- grayscale -> MNIST


def otsu_threshold(gray: np.ndarray) -> int:
    """The grey level that best splits the histogram into two classes (ink and background)."""
    hist = np.bincount(gray.reshape(-1), minlength=256).astype(np.float64)
    total = hist.sum()
    levels = np.arange(256, dtype=np.float64)
    w0 = np.cumsum(hist)
    w1 = total - w0
    m0 = np.cumsum(hist * levels)
    mt = m0[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mt * w0 / total - m0) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = -1
    return int(np.argmax(between))


def needs_invert(gray: np.ndarray) -> bool:
    """Dark ink on light paper? The border is mostly background: judge by its median brightness."""
    h, w = gray.shape
    b = max(1, min(h, w) // 20)
    border = np.concatenate([gray[:b].ravel(), gray[-b:].ravel(), gray[:, :b].ravel(), gray[:, -b:].ravel()])
    return bool(np.median(border) > 127)


def _border(a: np.ndarray) -> np.ndarray:
    h, w = a.shape
    b = max(1, min(h, w) // 20)
    return np.concatenate([a[:b].ravel(), a[-b:].ravel(), a[:, :b].ravel(), a[:, -b:].ravel()])


def _uneven(ink: np.ndarray) -> bool:
    """A photo under a lamp: the paper around the edge is not one shade (a canvas always is)."""
    lo, hi = np.percentile(_border(ink), [5, 95])
    return bool(hi - lo > 30)


def _flatten(ink: np.ndarray) -> np.ndarray:
    """Subtract the paper's own shading, estimated by a wide minimum filter on a small copy."""
    h, w = ink.shape
    s = 64 / max(h, w)
    small = Image.fromarray(ink).resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR)
    bg = small.filter(ImageFilter.MinFilter(9)).filter(ImageFilter.MaxFilter(9)).filter(ImageFilter.BoxBlur(4))
    bg_full = np.asarray(bg.resize((w, h), Image.Resampling.BILINEAR)).astype(np.int16)
    return np.clip(ink.astype(np.int16) - bg_full, 0, 255).astype(np.uint8)


def center_of_mass(a: np.ndarray) -> tuple[float, float]:
    m = a.astype(np.float64)
    total = m.sum()
    if total <= 0:
        return (a.shape[0] - 1) / 2, (a.shape[1] - 1) / 2
    ys, xs = np.indices(a.shape)
    return float((ys * m).sum() / total), float((xs * m).sum() / total)


def to_mnist(gray: np.ndarray, notes: list[str] | None = None) -> Processed:
    """Grayscale of any size -> the MNIST recipe, one step at a time."""
    t0 = time.perf_counter()
    out = Processed(notes=list(notes or []))
    gray = np.asarray(gray, dtype=np.uint8)
    out.steps.append(Step("1. grayscale", _thumb(gray)))
    if int(gray.max()) - int(gray.min()) < MIN_CONTRAST:
        out.seconds = time.perf_counter() - t0
        return out  # a blank canvas or a blank sheet: nothing to guess at

    out.inverted = needs_invert(gray)
    ink = 255 - gray if out.inverted else gray
    out.steps.append(Step("2. inverted" if out.inverted else "2. light ink already", _thumb(ink),
                          "dark ink on light paper, so flipped" if out.inverted else "light ink on dark: kept"))

    note = ""
    if _uneven(ink):
        ink = _flatten(ink)
        note = "uneven lighting evened out; "
    # Otsu splits ink from paper; a floor halfway from the paper to the ink stops a thin digit on
    # noisy paper from being split 'paper vs darker paper' instead.
    t = max(otsu_threshold(ink), int((np.median(ink) + int(ink.max())) / 2))
    clean = np.where(ink > t, ink, 0).astype(np.float32)
    top = float(np.percentile(clean[clean > 0], 95)) if (clean > 0).any() else 0.0
    if top <= 0:
        out.seconds = time.perf_counter() - t0
        return out
    clean = np.clip(clean * (255.0 / top), 0, 255).astype(np.uint8)
    out.steps.append(Step("3. background removed", _thumb(clean), f"{note}threshold {t}"))

    rows, cols = np.nonzero(clean)
    if len(rows) < 2:
        out.seconds = time.perf_counter() - t0
        return out
    crop = clean[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    out.steps.append(Step("4. cropped to the ink", _thumb(crop), f"{crop.shape[1]}x{crop.shape[0]} px"))

    h, w = crop.shape
    s = BOX / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    small = np.asarray(Image.fromarray(crop).resize((nw, nh), Image.Resampling.LANCZOS))
    out.steps.append(Step("5. longer side 20 px", small.copy(), f"{nw}x{nh} px"))

    frame = np.zeros((FRAME, FRAME), dtype=np.uint8)
    cy, cx = center_of_mass(small)
    top_y = int(round(FRAME / 2 - 0.5 - cy))
    left_x = int(round(FRAME / 2 - 0.5 - cx))
    top_y = min(max(top_y, 0), FRAME - nh)
    left_x = min(max(left_x, 0), FRAME - nw)
    frame[top_y : top_y + nh, left_x : left_x + nw] = small
    out.steps.append(Step("6. centred by mass in 28x28", frame.copy(), "the model's input"))
    out.image = frame
    out.seconds = time.perf_counter() - t0
    return out


def from_canvas(rgba: np.ndarray | None) -> Processed:
    """The drawable canvas's RGBA array -> MNIST style (empty when nothing is drawn)."""
    if rgba is None:
        return Processed()
    gray, note = rgba_to_gray(rgba)
    return to_mnist(gray, [note] if note else [])


CANVAS_MAX_SIDE = 2048  # the pad's PNG: its size in CSS pixels times the screen's pixel ratio, far below this
CANVAS_MAX_BYTES = 4 * 1024 * 1024


def from_canvas_png(png: bytes | None) -> Processed:
    """The drawing pad's PNG, as the browser sent it (anything may arrive over the websocket: a 150 KB PNG declaring
    6000x6000 pixels was decoded whole and cost 747 MB) -> MNIST style; PreprocessError when it is not a plain PNG
    of at most CANVAS_MAX_SIDE x CANVAS_MAX_SIDE."""
    if not png:
        return Processed()
    im, _ = open_image(png, formats=("PNG",), max_bytes=CANVAS_MAX_BYTES, max_pixels=CANVAS_MAX_SIDE ** 2,
                       whole_pixels=CANVAS_MAX_SIDE ** 2, what="drawing")
    return from_canvas(np.asarray(im.convert("RGBA")))


def from_upload(payload: bytes) -> Processed:
    """Uploaded photo bytes -> MNIST style; raises PreprocessError with a message for the user."""
    gray, notes = load_upload(payload)
    return to_mnist(gray, notes)


# ---------------------------------------------------------------- every model answers


@dataclass
class Answer:
    info: ModelInfo
    probs: np.ndarray  # [10] for digits; [2] as (P(7), P(3)) for the 3-vs-7 model
    labels: list[str]
    predicted: str
    confidence: float
    question: str  # what this model can answer


def answer(model: torch.nn.Module, info: ModelInfo, image: np.ndarray) -> Answer:
    """One model's answer on one 28x28 uint8 digit. A pair model such as 3 vs 7 only says '3' or '7'."""
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.uint8))[None]
    p = predict_proba(model, info.config, x)[0].numpy()
    labels = list(info.config.classes)  # ["7", "3"] for the 3-vs-7 model, as predict_proba orders them
    question = f"{info.config.question} (it knows no other digit)" if info.config.pair else "which digit, 0-9?"
    best = int(p.argmax())
    return Answer(info, p, labels, labels[best], float(p[best]), question)


def answer_all(models: list[tuple[torch.nn.Module, ModelInfo]], image: np.ndarray) -> list[Answer]:
    """Every model's answer: ten-class models best first, pair models such as 3 vs 7 last (a smaller question)."""
    answers = [answer(m, i, image) for m, i in models]
    return sorted(answers, key=lambda a: (a.info.config.pair is not None, -float(a.info.metrics.get("test_accuracy") or 0)))


# ---------------------------------------------------------------- what the page needs besides


def recommended_configs() -> dict[str, TrainConfig]:
    """One click on an empty store trains these: a fast CNN, the fastai MLP (fewer epochs), the 3-vs-7 model."""
    return {
        "cnn": PRESETS["cnn-fast"],
        "mlp": PRESETS["simple_net"].with_(epochs=8),
        "linear": PRESETS["linear-better"],
    }


def enlarge(img: np.ndarray, side: int = 112) -> np.ndarray:
    """Nearest-neighbour upscale, so a 28x28 digit shows its real pixels instead of a browser blur."""
    a = np.asarray(img, dtype=np.uint8)
    k = max(1, side // max(a.shape))
    return np.repeat(np.repeat(a, k, axis=0), k, axis=1)


def norm_text(config: TrainConfig) -> str:
    """How this model's input is scaled, in the words of the seeds' transforms."""
    mean, std = NORMALISATIONS[config.norm]
    if config.norm == "none":
        return "pixels / 255 (0..1)"
    return f"(pixels / 255 - {mean:g}) / {std:g}"


def square_view(img: np.ndarray, side: int = 112) -> np.ndarray:
    """A step's image on a black square of ``side`` px, aspect kept: a tall crop does not become a tall column."""
    a = np.asarray(img, dtype=np.uint8)
    h, w = a.shape
    n = max(h, w)
    sq = np.zeros((n, n), dtype=np.uint8)
    sq[(n - h) // 2 : (n - h) // 2 + h, (n - w) // 2 : (n - w) // 2 + w] = a
    if n <= 28:
        return enlarge(sq, side)  # show the real pixels
    return np.asarray(Image.fromarray(sq).resize((side, side), Image.Resampling.BILINEAR))
