"""Preprocessing on real MNIST digits drawn big, small, shifted and bold; bad uploads; the class collection."""

import io
import json
import threading

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from digitlab import preprocess as pp
from digitlab.collection import Collection, CollectionError
from digitlab.train import predict_proba

N = 300  # real test digits per variant


@pytest.fixture(scope="module")
def best_cnn(mnist, tmp_path_factory):
    """One real training for the whole file: cnn-fast, one epoch on the full MNIST; the best stored CNN."""
    from classroom import train_in_process

    from digitlab.models import PRESETS
    from digitlab.store import ModelStore

    store = ModelStore(tmp_path_factory.mktemp("models"))
    assert train_in_process(store, mnist, [PRESETS["cnn-fast"].with_(epochs=1)])
    cnns = [i for i in store.list() if i.config.kind == "cnn"]
    best = max(cnns, key=lambda i: i.metrics.get("test_accuracy", 0))
    return store.load(best.id)


def render(digit: np.ndarray, size: int, at: tuple[int, int], bold: int = 0, paper: bool = False) -> np.ndarray:
    """An MNIST digit drawn onto a 280x280 RGBA canvas: scaled to ``size`` px, top-left at ``at``, optionally bolder."""
    im = Image.fromarray(digit).resize((size, size), Image.Resampling.BILINEAR)
    if bold:
        im = im.filter(ImageFilter.MaxFilter(bold))
    canvas = np.zeros((280, 280), dtype=np.uint8)
    y, x = at
    canvas[y : y + size, x : x + size] = np.asarray(im)
    if paper:
        canvas = 255 - canvas
    rgba = np.zeros((280, 280, 4), dtype=np.uint8)
    rgba[..., :3] = canvas[..., None]
    rgba[..., 3] = 255
    return rgba


VARIANTS = {
    "small, top-left": dict(size=84, at=(10, 10)),
    "large": dict(size=270, at=(5, 5)),
    "shifted right-down": dict(size=140, at=(130, 130)),
    "thick strokes": dict(size=196, at=(40, 40), bold=9),
    "dark ink on paper": dict(size=168, at=(60, 20), paper=True),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_cnn_keeps_97_percent_on_redrawn_mnist(mnist, best_cnn, variant):
    model, info = best_cnn
    digits, labels = mnist.test_images[:N].numpy(), mnist.test_labels[:N]
    out = []
    for d in digits:
        result = pp.from_canvas(render(d, **VARIANTS[variant]))
        assert not result.empty
        assert result.image.shape == (28, 28) and result.image.dtype == np.uint8
        out.append(result.image)
    probs = predict_proba(model, info.config, torch.from_numpy(np.stack(out)))
    acc = float((probs.argmax(1) == labels).float().mean())
    assert acc >= 0.97, f"{variant}: {acc:.1%}"


def test_steps_and_mnist_geometry(mnist):
    result = pp.from_canvas(render(mnist.test_images[0].numpy(), size=100, at=(150, 20)))
    names = [s.name for s in result.steps]
    assert names[0].startswith("1. grayscale") and names[-1].startswith("6. centred")
    assert len(names) == 6
    ys, xs = np.nonzero(result.image)
    assert max(ys.max() - ys.min(), xs.max() - xs.min()) + 1 == 20  # longer side 20 px
    cy, cx = pp.center_of_mass(result.image)
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1  # centred by mass
    assert not result.inverted


def test_dark_ink_on_light_paper_is_inverted(mnist):
    result = pp.from_canvas(render(mnist.test_images[1].numpy(), size=150, at=(50, 50), paper=True))
    assert result.inverted
    assert result.image[0, 0] == 0 and result.image.max() == 255


def test_empty_canvas_is_empty_not_a_guess():
    blank = np.zeros((280, 280, 4), dtype=np.uint8)
    assert pp.from_canvas(blank).empty
    assert pp.from_canvas(None).empty
    rng = np.random.default_rng(0)
    faint = np.full((280, 280, 4), 255, dtype=np.uint8)
    faint[..., :3] = rng.integers(120, 140, size=(280, 280, 1))  # grey noise, no ink
    assert pp.from_canvas(faint).empty


def test_light_strokes_on_transparent_canvas_layer(mnist):
    """Canvases may return strokes on a transparent layer: the background becomes the opposite of the ink."""
    rgba = render(mnist.test_images[2].numpy(), size=150, at=(50, 50))
    rgba[..., 3] = rgba[..., 0]  # ink opaque, background transparent
    rgba[..., :3] = 255
    result = pp.from_canvas(rgba)
    assert not result.empty and not result.inverted
    assert any("black" in n for n in result.notes)


def _png(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=kw.pop("format", "PNG"), **kw)
    return buf.getvalue()


def test_noisy_photo_of_dark_ink_on_paper(mnist, best_cnn):
    """A 'photo': grey paper with a lighting gradient and noise, dark ink, saved as JPEG."""
    model, info = best_cnn
    rng = np.random.default_rng(1)
    ok = 0
    for d, y in zip(mnist.test_images[:50].numpy(), mnist.test_labels[:50].tolist()):
        ink = np.asarray(Image.fromarray(d).resize((300, 300), Image.Resampling.BILINEAR)).astype(np.float32) / 255
        paper = 170 + np.linspace(0, 60, 400)[None, :] + rng.normal(0, 8, (400, 400))
        photo = paper.copy()
        photo[50:350, 50:350] = photo[50:350, 50:350] * (1 - ink) + 30 * ink
        rgb = np.repeat(np.clip(photo, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
        result = pp.from_upload(_png(Image.fromarray(rgb), format="JPEG", quality=85))
        assert result.inverted and not result.empty
        ok += int(predict_proba(model, info.config, torch.from_numpy(result.image)[None]).argmax() == y)
    assert ok >= 48


# ---------------------------------------------------------------- bad uploads: a clear message, never a crash


def _digit_image(mode: str = "L") -> Image.Image:
    a = np.full((64, 64), 255, dtype=np.uint8)
    a[10:54, 28:36] = 0
    return Image.fromarray(a).convert(mode)


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b"", "empty"),
        (b"hello, I am a text file" * 10, "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * (pp.MAX_UPLOAD_BYTES + 1), "limit is 10 MB"),
    ],
    ids=["empty", "not-an-image", "too-many-bytes"],
)
def test_bad_bytes(payload, words):
    with pytest.raises(pp.PreprocessError, match=words):
        pp.from_upload(payload)


def test_other_format_is_named():
    with pytest.raises(pp.PreprocessError, match="GIF images are not accepted"):
        pp.from_upload(_png(_digit_image("P"), format="GIF"))
    with pytest.raises(pp.PreprocessError, match="BMP images are not accepted"):
        pp.from_upload(_png(_digit_image(), format="BMP"))


def test_decompression_bombs():
    # Over twice the limit: Pillow's own DecompressionBombError; just over it: the warning, turned into a refusal.
    for side in (10_000, 7_000):
        payload = _png(Image.new("1", (side, side)))
        assert len(payload) < pp.MAX_UPLOAD_BYTES
        with pytest.raises(pp.PreprocessError, match="too many pixels"):
            pp.from_upload(payload)


def test_pillows_own_limit_is_left_alone_and_big_photos_decode_small():
    import importlib

    before = Image.MAX_IMAGE_PIXELS
    importlib.reload(pp)
    assert Image.MAX_IMAGE_PIXELS == before  # importing DigitLab changes nothing for other Pillow users
    # A 4000x4000 JPEG of a bar (a '1'): read at a fraction of its size, the note says from what.
    big = _digit_image().resize((4000, 4000), Image.Resampling.NEAREST)
    payload = _png(big, format="JPEG", quality=90)
    gray, notes = pp.load_upload(payload)
    assert max(gray.shape) <= pp.WORK_SIDE
    assert any("shrunk from 4000x4000" in n for n in notes)
    result = pp.from_upload(payload)
    assert not result.empty and result.image.shape == (28, 28)


def test_a_huge_png_is_refused_before_it_is_decoded_and_a_large_one_decodes_small():
    """A 6300x6300 PNG is under the pixel limit but would be decoded whole (314 MB at peak in the issue)."""
    huge = _png(_digit_image("1").resize((6300, 6300), Image.Resampling.NEAREST), optimize=True)
    assert len(huge) < pp.MAX_UPLOAD_BYTES
    with pytest.raises(pp.PreprocessError, match="6300x6300 pixels; a PNG that large would be decoded whole"):
        pp.from_upload(huge)
    # a screenshot-sized PNG is taken, shrunk straight after decoding
    gray, notes = pp.load_upload(_png(_digit_image("RGB").resize((2600, 2600), Image.Resampling.NEAREST)))
    assert max(gray.shape) <= pp.WORK_SIDE and any("shrunk from 2600x2600" in n for n in notes)


def test_a_phone_photo_is_turned_as_the_camera_was_held_after_shrinking():
    """EXIF orientation 6 (the phone held upright): the stored pixels lie on their side."""
    upright = _digit_image().resize((1200, 1200), Image.Resampling.NEAREST).crop((0, 0, 1200, 900))
    on_its_side = upright.transpose(Image.Transpose.ROTATE_90)  # what the sensor wrote
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise to view
    gray, notes = pp.load_upload(_png(on_its_side.convert("RGB"), format="JPEG", exif=exif.tobytes()))
    assert gray.shape[1] > gray.shape[0]  # wider than tall again, as the camera saw it
    ink = np.nonzero(gray < 128)
    assert np.ptp(ink[0]) > 2 * np.ptp(ink[1])  # the bar stands upright


def test_animated_png_and_webp():
    frames = [_digit_image("RGB"), _digit_image("RGB").rotate(90)]
    for fmt in ("PNG", "WEBP"):
        payload = _png(frames[0], format=fmt, save_all=True, append_images=frames[1:], duration=100)
        with pytest.raises(pp.PreprocessError, match="animated"):
            pp.from_upload(payload)


def test_16_bit_png():
    a = (np.asarray(_digit_image()).astype(np.uint16) * 257)
    im = Image.fromarray(a)
    payload = _png(im)
    assert Image.open(io.BytesIO(payload)).mode.startswith("I")
    with pytest.raises(pp.PreprocessError, match="16-bit"):
        pp.from_upload(payload)


def test_cmyk_jpeg():
    payload = _png(_digit_image("CMYK"), format="JPEG")
    assert Image.open(io.BytesIO(payload)).mode == "CMYK"
    with pytest.raises(pp.PreprocessError, match="CMYK"):
        pp.from_upload(payload)


def test_truncated_png():
    payload = _png(_digit_image("RGB").resize((400, 400)))
    with pytest.raises(pp.PreprocessError, match="damaged|could not be read"):
        pp.from_upload(payload[: len(payload) // 2])


def test_transparent_png_is_composited_onto_white():
    """Dark ink on a transparent background looks like ink on white in any viewer: that is what we use."""
    a = np.zeros((64, 64, 4), dtype=np.uint8)
    a[10:54, 28:36, 3] = 255  # black opaque stroke, the rest transparent
    result = pp.from_upload(_png(Image.fromarray(a)))
    assert not result.empty and result.inverted
    assert any("white" in n for n in result.notes)


def test_good_uploads_in_each_format():
    for fmt in ("PNG", "JPEG", "WEBP"):
        result = pp.from_upload(_png(_digit_image("RGB"), format=fmt))
        assert not result.empty, fmt
        ys, xs = np.nonzero(result.image > 64)
        assert ys.max() - ys.min() + 1 >= 19  # a tall bar: its height becomes 20 px


# ---------------------------------------------------------------- the class collection


def test_collection_survives_a_restart_and_takes_in_drawings_saved_the_old_way(tmp_path, mnist):
    old = tmp_path / "col"  # a collection from before the database: PNGs named by label and id, and an index
    old.mkdir()
    Image.fromarray(mnist.test_images[1].numpy()).save(old / "2_00000000abcd.png")
    (old / "index.json").write_text(json.dumps({"version": 1, "entries": [
        {"id": "00000000abcd", "label": 2, "source": "upload", "created": "2026-11-01T09:00:00+00:00"}]}))
    col = Collection(old)
    assert [(e.id, e.label, e.source) for e in col.list()] == [("00000000abcd", 2, "upload")]
    d3, d7 = mnist.test_images[18].numpy(), mnist.test_images[0].numpy()
    e1 = col.add(d3, 3, saved_by="session-a")
    col.add(d7, 7, source="upload")
    again = Collection(old)  # a restart: a fresh object over the same folder
    assert again.counts()[3] == 1 and again.counts()[7] == 1 and again.counts()[2] == 1
    images, labels, entries = again.load()
    assert images.dtype == torch.uint8 and images.shape == (3, 28, 28)
    assert sorted(labels.tolist()) == [2, 3, 7]
    assert np.array_equal(images[[e.id for e in entries].index(e1.id)].numpy(), d3)
    assert [e.saved_by for e in entries if e.id == e1.id] == ["session-a"]
    before = again.version()
    col.delete(e1.id)
    assert Collection(old).counts()[3] == 0 and Collection(old).version() != before
    assert (old / "collection.sqlite3").is_file()


def test_the_same_digit_saved_twice_by_one_student_is_kept_once(tmp_path, mnist):
    """The same upload saved twice gave two rows (issue 29): one row now; another student's copy is theirs."""
    col = Collection(tmp_path / "col")
    seven = mnist.test_images[0].numpy()
    first, second = col.add(seven, 7, "upload", saved_by="a"), col.add(seven, 7, "upload", saved_by="a")
    assert first.id == second.id and col.counts()[7] == 1
    col.add(seven, 7, "upload", saved_by="b")
    col.add(seven, 1, "upload", saved_by="a")  # another label is another drawing
    assert col.counts()[7] == 2 and col.counts()[1] == 1


def test_collection_refuses_bad_entries(tmp_path):
    col = Collection(tmp_path / "col")
    with pytest.raises(CollectionError):
        col.add(np.zeros((20, 20), dtype=np.uint8), 3)
    with pytest.raises(CollectionError):
        col.add(np.zeros((28, 28), dtype=np.uint8), 12)
    assert col.list() == []


def test_a_drawing_is_never_listed_without_its_source_and_time(tmp_path, mnist):
    """Another session lists the collection while drawings are saved: it sees each one whole or not at all."""
    col = Collection(tmp_path / "col")
    seen, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            seen.extend(Collection(tmp_path / "col").list())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for i in range(40):
            col.add(mnist.test_images[i].numpy(), int(mnist.test_labels[i]), source="upload")
    finally:
        stop.set()
        watcher.join()
    assert len({e.id for e in seen}) > 1
    assert [e for e in seen if e.source != "upload" or not e.created] == []
    assert len(col.list()) == 40


def test_the_pads_png_goes_through_the_same_door_with_the_pads_limits(mnist):
    """The canvas's value is whatever a client sends: a 150 KB PNG declaring 6000x6000 pixels was decoded whole
    (+747 MB, issue 29). Refused on its header now; a real pad's PNG gives what its pixels give."""
    import resource

    bomb = _png(Image.new("1", (6000, 6000)), optimize=True)  # made with 4.5 MB; as the pad's RGBA it is 144 MB
    assert len(bomb) < 200_000
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(pp.PreprocessError, match="6000x6000, more than 4.2 million"):
        pp.from_canvas_png(bomb)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 20_000  # kB: nothing was decoded
    with pytest.raises(pp.PreprocessError, match="not an image"):
        pp.from_canvas_png(b"GIF89a" + b"\0" * 100)
    pad = render(mnist.test_images[0].numpy(), size=200, at=(60, 60))  # RGBA, as the pad draws it
    assert pp.from_canvas_png(_png(Image.fromarray(pad, "RGBA"))).image.tolist() == pp.from_canvas(pad).image.tolist()
    assert pp.from_canvas_png(None).empty and pp.from_canvas_png(b"").empty


def test_a_stored_drawing_that_is_not_a_small_png_is_refused():
    from digitlab.drawings_db import DrawingsError, decode

    with pytest.raises(DrawingsError, match="not a 28x28 PNG"):
        decode(_png(Image.new("L", (3000, 3000))))
    assert decode(_png(Image.new("L", (28, 28), 200))).shape == (28, 28)
