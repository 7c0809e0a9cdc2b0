"""The one door for every image that comes into DigitLab: an upload, the drawing pad's PNG, a drawing of the class's
collection. Pillow and numpy only, so the collection's database code can use it without torch."""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # a phone photo is 2-6 MB
MAX_PIXELS = 40_000_000  # about a 48-megapixel photo; more is a bomb or a mistake
# A JPEG decodes straight at 1/2, 1/4 or 1/8 of its size (Pillow's draft), so even a 40-megapixel photo costs a few
# MB; a PNG or WebP can only be decoded whole, so those are taken up to this size (32 MB as RGBA, at most).
MAX_WHOLE_DECODE_PIXELS = 8_000_000
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP")
WORK_SIDE = 560  # large photos are shrunk to this first: a 28x28 result needs no more


class ImageError(Exception):
    """A problem with an image that came in, in words the user can act on."""


def open_image(payload: bytes, *, formats: tuple[str, ...] = ALLOWED_FORMATS, max_bytes: int = MAX_UPLOAD_BYTES,
               max_pixels: int = MAX_PIXELS, whole_pixels: int = MAX_WHOLE_DECODE_PIXELS,
               what: str = "file") -> tuple[Image.Image, tuple[int, int]]:
    """The one door for every image that comes in (an upload, the drawing pad's PNG, a drawing of the collection):
    a decoded still 8-bit image, or ImageError saying why not. Its size in bytes and its pixels are checked on
    the header, before a single pixel is decoded: a PNG of 150 KB can declare 36 million pixels. A JPEG is decoded
    at a fraction of its size (Pillow's draft); another format only whole, so only up to ``whole_pixels``. Returns
    the image and its size as its header gave it (a JPEG's draft is smaller)."""
    if not payload:
        raise ImageError(f"The {what} is empty.")
    if len(payload) > max_bytes:
        raise ImageError(
            f"The {what} is {len(payload) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB. "
            "Take a smaller photo or crop it around the digit."
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(payload), formats=list(formats))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError(
                f"The image has too many pixels (more than {max_pixels / 1e6:.0f} million): "
                "it may be a decompression bomb. Use a smaller image."
            ) from None
        except UnidentifiedImageError:
            raise ImageError(_not_allowed(payload)) from None
        except Exception as e:  # noqa: BLE001 - any decoder failure is the file's fault
            raise ImageError(f"The {what} could not be read as an image ({type(e).__name__}).") from None
        try:
            # Checked on the header, before a single pixel is decoded (Pillow's own guard is set higher
            # and is the whole process's: it is left as it is).
            if im.width * im.height > max_pixels:
                raise ImageError(
                    f"The image has too many pixels ({im.width}x{im.height}, more than {max_pixels / 1e6:.1f} "
                    "million): it may be a decompression bomb. Use a smaller image or crop it around the digit."
                )
            if getattr(im, "n_frames", 1) > 1:
                raise ImageError(
                    f"This is an animated image ({im.n_frames} frames). Upload a single still picture."
                )
            if im.mode.startswith("I;16") or im.mode in ("I", "F"):
                raise ImageError(
                    f"This is a 16-bit or high-precision image (mode {im.mode}). Save it as an ordinary 8-bit "
                    "PNG or JPEG and upload that."
                )
            if im.mode == "CMYK":
                raise ImageError(
                    "This image is in CMYK colours (a print format). Save it as RGB (an ordinary PNG or JPEG)."
                )
            header_size = im.size
            if im.format == "JPEG":
                im.draft(None, (WORK_SIDE, WORK_SIDE))  # decoded straight at 1/2, 1/4 or 1/8 of its size
            elif im.width * im.height > whole_pixels:
                raise ImageError(
                    f"This {im.format} is {im.width}x{im.height} pixels; a {im.format} that large would be decoded "
                    f"whole. Crop it around the digit (at most {whole_pixels / 1e6:.0f} million pixels), "
                    "or upload it as a JPEG photo."
                )
            im.load()
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError("The image has too many pixels: it may be a decompression bomb.") from None
        except Exception as e:  # noqa: BLE001 - truncated or corrupt data
            raise ImageError(f"The image is damaged or incomplete and could not be decoded ({e}).") from None
    return im, header_size


def _not_allowed(payload: bytes) -> str:
    """Name the format when Pillow knows it, so the message says what to do."""
    try:
        with Image.open(io.BytesIO(payload)) as other:
            fmt = other.format
    except Exception:  # noqa: BLE001
        fmt = None
    if fmt:
        return f"{fmt} images are not accepted. Upload a PNG, JPEG or WebP photo or scan of the digit."
    return "This file is not an image DigitLab can read. Upload a PNG, JPEG or WebP photo or scan of the digit."


