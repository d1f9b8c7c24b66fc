"""Image decoding and preprocessing: the edge where files become model inputs.

:func:`load_image` turns a path, raw bytes, a binary file object, a PIL image or a NumPy
array into a normalised ``(1, 3, size, size)`` tensor plus the matching ``uint8`` RGB
array (for overlays). Decoding is defensive: the pixel count is checked against a limit
before any pixel data is decoded (decompression bombs), truncated files raise instead of
being padded with grey, and every failure is reported as one line naming the source.

Colour handling, whatever the input mode:

* EXIF orientation is applied (a phone photo comes out upright).
* Transparency (RGBA, LA, PA, palette or RGB/L images with a transparent colour) is
  composited onto a **white** background, the way such images are usually displayed;
  simply dropping the alpha channel would expose whatever colour the transparent pixels
  happen to store (often black).
* 16-bit and 32-bit greyscale (``I;16*``, ``I``) are scaled linearly from 0..65535 to 0..255
  (rounded, not clipped); ``F`` images in [0, 1] are scaled by 255; other ``I``/``F`` ranges
  are min-max scaled.
* CMYK, YCbCr, bilevel and other modes go through Pillow's RGB conversion.
* For multi-frame files (animated GIF/PNG/WebP, multi-page TIFF) the first frame is used.

Resizing uses Pillow's antialiased **bilinear** filter (the same as torchvision's default
``Resize`` on PIL images): in ``"resize"`` mode the whole image is scaled to
``size x size`` (the aspect ratio is not kept), as in the RSI-Grad-CAM authors' code; in
``"crop"`` mode the short side is scaled to ``size`` and the centre ``size x size`` square
is kept. The crop is taken in source coordinates (the exact centre square, resampled
straight to ``size x size``), so an extreme aspect ratio never builds a huge intermediate
image.

Limits: ``max_pixels`` (default 100 megapixels) is checked on the header, before decoding.
Pillow's own process-wide check (``PIL.Image.MAX_IMAGE_PIXELS``) still runs and may emit a
``DecompressionBombWarning`` for images it finds large; when ``max_pixels`` is above what
Pillow would accept, Pillow's limit is raised for the duration of the decode and restored.
EPS files are not opened (Pillow would run Ghostscript on them).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Literal, TypeAlias

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from rsigradcam.constants import IMAGENET_MEAN, IMAGENET_STD
from rsigradcam.files import one_line

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageLoadError",
    "ImageSource",
    "denormalize",
    "load_image",
    "preprocess",
    "read_image",
]

ImageSource: TypeAlias = (
    str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes] | Image.Image | np.ndarray
)
"""Anything :func:`load_image` and :func:`read_image` accept."""

ResizeMode: TypeAlias = Literal["resize", "crop"]

DEFAULT_MAX_PIXELS = 100_000_000
"""Default limit on width x height of a decoded image (100 megapixels)."""

_WHITE = (255, 255, 255, 255)
# EPS decoding runs Ghostscript in a subprocess: not something an image loader should do.
_EXCLUDED_FORMATS = frozenset({"EPS"})
_PILLOW_LIMIT_LOCK = threading.Lock()


class ImageLoadError(ValueError):
    """An image source that is empty, truncated, not an image, or too large to decode.

    A ``ValueError``, with a one-line message that names the source.

    Example:
        >>> try:
        ...     read_image(b"not an image")
        ... except ImageLoadError as error:
        ...     print(error)
        the image data (12 bytes) is not a readable image: not a recognised image format
    """


# --------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------


def _check_options(
    size: int | tuple[int, int], mode: str, mean: Sequence[float], std: Sequence[float]
) -> None:
    """Validate the preprocessing arguments, raising one clear error per problem."""
    sides = size if isinstance(size, tuple) else (size,)
    if (isinstance(size, tuple) and len(sides) != 2) or any(
        isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in sides
    ):
        raise ValueError(
            f"size must be a positive integer or a (height, width) pair of them, got {size!r}"
        )
    if mode not in ("resize", "crop"):
        raise ValueError(f"mode must be 'resize' or 'crop', got {mode!r}")
    for name, values in (("mean", mean), ("std", std)):
        if len(values) != 3 or not all(math.isfinite(float(v)) for v in values):
            raise ValueError(f"{name} must be 3 finite numbers (R, G, B), got {values!r}")
    if any(float(v) <= 0 for v in std):
        raise ValueError(f"std values must be positive, got {std!r}")


def _check_max_pixels(max_pixels: int | None) -> None:
    if max_pixels is not None and (
        isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1
    ):
        raise ValueError(f"max_pixels must be a positive integer or None, got {max_pixels!r}")


# --------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------


def _unreadable(label: str, exc: BaseException) -> ImageLoadError:
    """Build the one-line error for a source that cannot be decoded."""
    if isinstance(exc, UnidentifiedImageError):
        reason = "not a recognised image format"
    else:
        reason = one_line(str(exc)) or type(exc).__name__
    return ImageLoadError(f"{label} is not a readable image: {reason}")


def _too_large(label: str, width: int, height: int, max_pixels: int) -> ImageLoadError:
    return ImageLoadError(
        f"{label} is too large: {width}x{height} = {width * height:,} pixels exceeds the "
        f"limit of {max_pixels:,} pixels (a possible decompression bomb); pass a larger "
        "max_pixels to load it anyway"
    )


def _check_size(label: str, image: Image.Image, max_pixels: int | None) -> None:
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        raise _too_large(label, width, height, max_pixels)


@contextlib.contextmanager
def _pillow_allows(max_pixels: int | None) -> Iterator[None]:
    """Keep Pillow's own bomb check from refusing what ``max_pixels`` allows.

    Pillow raises ``DecompressionBombError`` above ``2 * Image.MAX_IMAGE_PIXELS``. Only when
    ``max_pixels`` is above that is the global raised, for the duration of the block and
    under a lock, then restored. Otherwise nothing global is touched.
    """
    current = Image.MAX_IMAGE_PIXELS
    if current is None or (max_pixels is not None and max_pixels <= 2 * current):
        yield
        return
    with _PILLOW_LIMIT_LOCK:
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def _allowed_formats() -> list[str]:
    Image.init()
    return [name for name in Image.OPEN if name not in _EXCLUDED_FORMATS]


def _pillow_refused(label: str, exc: Exception, max_pixels: int | None) -> ImageLoadError:
    """Build the error for an image that Pillow's own bomb check refused.

    Pillow only refuses images above twice its global limit, and the global is raised when
    ``max_pixels`` is higher than that, so such an image is always above ``max_pixels``.
    Pillow reports the pixel count, not the dimensions.
    """
    found = re.search(r"\((\d+) pixels\)", str(exc))
    if found is None or max_pixels is None:
        return ImageLoadError(f"{label} is too large: {one_line(str(exc))}")
    return ImageLoadError(
        f"{label} is too large: {int(found.group(1)):,} pixels exceeds the limit of "
        f"{max_pixels:,} pixels (a possible decompression bomb); pass a larger max_pixels "
        "to load it anyway"
    )


def _decode(fp: IO[bytes], label: str, max_pixels: int | None) -> Image.Image:
    """Open, size-check and fully decode the first frame of an encoded image.

    Returns an RGB image that no longer depends on ``fp``. Every failure, whatever the
    decoder raised, becomes one :class:`ImageLoadError` naming ``label``.
    """
    try:
        with _pillow_allows(max_pixels):
            image = Image.open(fp, formats=_allowed_formats())
            # Checked on the header, before any pixel data is decoded.
            _check_size(label, image, max_pixels)
            with image:
                image.load()
                return _to_rgb(image, label)
    except (ImageLoadError, MemoryError):
        raise
    except Image.DecompressionBombError as exc:
        raise _pillow_refused(label, exc, max_pixels) from exc
    except Exception as exc:  # any decoder failure (OSError, SyntaxError, struct.error...)
        raise _unreadable(label, exc) from exc


def _is_url(text: str) -> bool:
    return text.split(":", 1)[0].lower() in ("http", "https", "ftp", "file", "data") and (
        "://" in text or text.lower().startswith("data:")
    )


def _read_path(path: str | os.PathLike[str], max_pixels: int | None) -> Image.Image:
    text = os.fsdecode(os.fspath(path))
    if _is_url(text):
        raise ValueError(
            f"URLs are not supported ('{text}'); download the image and pass the file path"
        )
    file = Path(text)
    label = f"'{text}'"
    if not file.exists():
        raise FileNotFoundError(f"Image file not found: {label}")
    if file.is_dir():
        raise IsADirectoryError(f"{label} is a directory, not an image file")
    if file.stat().st_size == 0:
        raise ImageLoadError(f"{label} is not a readable image: the file is empty (0 bytes)")
    with file.open("rb") as fp:
        return _decode(fp, label, max_pixels)


def _array_to_image(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8:
        raise TypeError(
            f"image arrays must have dtype uint8 (values 0..255), got {array.dtype}; "
            "convert with e.g. (array * 255).round().astype(np.uint8)"
        )
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ValueError(
            "image arrays must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), "
            f"got {array.shape}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"image array is empty: shape {array.shape}")
    return Image.fromarray(np.ascontiguousarray(array))


def read_image(source: ImageSource, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode an image into an upright RGB PIL image at its original size.

    This is the decoding half of :func:`load_image` (see the module docstring for how
    modes, transparency and orientation are handled).

    Args:
        source: A file path (``str`` or ``os.PathLike``), the encoded file's ``bytes``, a
            binary file object, a PIL image, or a ``uint8`` NumPy array of shape
            ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)``. A ``str`` is always a path; URLs
            are refused (nothing is downloaded).
        max_pixels: Largest accepted width x height for encoded sources and PIL images,
            checked before the pixel data is decoded. ``None`` disables the check.

    Returns:
        An RGB ``PIL.Image.Image`` (a new object; a PIL source is not modified).

    Raises:
        FileNotFoundError: If a path does not exist.
        IsADirectoryError: If a path is a directory.
        ImageLoadError: A ``ValueError``: the data is empty, truncated, not an image, in an
            unsupported mode, or larger than ``max_pixels``.
        ValueError: If ``source`` is a URL, an array has the wrong shape, or ``max_pixels``
            is invalid.
        TypeError: If ``source`` has an unsupported type or an array has the wrong dtype.

    Example:
        >>> import numpy as np
        >>> read_image(np.zeros((20, 30), dtype=np.uint8)).size
        (30, 20)
    """
    _check_max_pixels(max_pixels)
    if isinstance(source, Image.Image):
        filename = getattr(source, "filename", "")
        label = f"'{filename}'" if isinstance(filename, str) and filename else "the PIL image"
        _check_size(label, source, max_pixels)
        try:
            source.load()
        except Image.DecompressionBombError as exc:
            raise _pillow_refused(label, exc, max_pixels) from exc
        except Exception as exc:  # a lazily opened image is decoded here
            raise _unreadable(label, exc) from exc
        return _to_rgb(source, label)
    if isinstance(source, np.ndarray):
        return _to_rgb(_array_to_image(source), "the array")
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = f"the image data ({len(data):,} bytes)"
        if not data:
            raise ImageLoadError("the image data is not a readable image: it is empty (0 bytes)")
        return _decode(io.BytesIO(data), label, max_pixels)
    if isinstance(source, (str, os.PathLike)):
        return _read_path(source, max_pixels)
    if hasattr(source, "read"):
        name = getattr(source, "name", None)
        label = f"'{name}'" if isinstance(name, str) else "the file object"
        return _decode(source, label, max_pixels)
    raise TypeError(
        "source must be a path, bytes, a binary file object, a PIL image or a uint8 NumPy "
        f"array, got {type(source).__name__}"
    )


# --------------------------------------------------------------------------------------
# Mode conversion
# --------------------------------------------------------------------------------------


def _high_depth_to_uint8(image: Image.Image) -> np.ndarray:
    """Scale a 16/32-bit integer or float greyscale image to ``uint8`` without clipping."""
    data = np.asarray(image)
    if image.mode.startswith("I;16") or (
        image.mode == "I" and data.size and data.min() >= 0 and data.max() <= 65535
    ):
        wide = data.astype(np.uint32)
        return ((wide * 255 + 32767) // 65535).astype(np.uint8)
    values = np.nan_to_num(data.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if image.mode == "F" and low >= 0.0 and high <= 1.0:
        scaled = values * 255.0
    elif high > low:
        scaled = (values - low) * (255.0 / (high - low))
    else:
        scaled = np.clip(values, 0.0, 255.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _to_rgb(image: Image.Image, label: str = "the image") -> Image.Image:
    """Return an upright RGB copy of ``image`` (alpha composited onto white)."""
    try:
        try:
            upright = ImageOps.exif_transpose(image)
        except Exception:  # a malformed EXIF block must not lose the image
            upright = image.copy()
        mode = upright.mode
        if mode in ("I", "F") or mode.startswith("I;16"):
            return Image.fromarray(_high_depth_to_uint8(upright)).convert("RGB")
        if upright.has_transparency_data:
            # Pillow converts premultiplied "La" only to "LA".
            rgba = (upright.convert("LA") if mode == "La" else upright).convert("RGBA")
            background = Image.new("RGBA", rgba.size, _WHITE)
            return Image.alpha_composite(background, rgba).convert("RGB")
        return upright.convert("RGB") if mode != "RGB" else upright
    except (ValueError, OSError) as exc:
        raise ImageLoadError(
            f"{label} has an unsupported image mode '{image.mode}': {one_line(str(exc))}"
        ) from exc


# --------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------


def _resize(image: Image.Image, size: int | tuple[int, int], mode: ResizeMode) -> Image.Image:
    out_h, out_w = size if isinstance(size, tuple) else (size, size)
    width, height = image.size
    if mode == "resize":
        if (width, height) == (out_w, out_h):
            return image
        return image.resize((out_w, out_h), Image.Resampling.BILINEAR)
    # "crop": the largest centre box of the output's aspect ratio (the centre square for a
    # square output), resampled straight to the output size (the same as scaling the short
    # side and cropping, without building the large image).
    scale = min(width / out_w, height / out_h)
    box_w, box_h = out_w * scale, out_h * scale
    left = (width - box_w) / 2.0
    top = (height - box_h) / 2.0
    box = (left, top, left + box_w, top + box_h)
    return image.resize((out_w, out_h), Image.Resampling.BILINEAR, box=box)


def preprocess(
    image: Image.Image | np.ndarray,
    size: int | tuple[int, int] = 224,
    mode: ResizeMode = "resize",
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> tuple[torch.Tensor, np.ndarray]:
    """Resize an image and normalise it into a model input (the preprocessing transform).

    Args:
        image: A PIL image (any mode; EXIF orientation and transparency are handled as in
            :func:`load_image`) or a ``uint8`` array of shape ``(H, W)``, ``(H, W, 3)`` or
            ``(H, W, 4)``.
        size: Output height and width: one number, or ``(height, width)``.
        mode: ``"resize"`` scales the whole image to ``size x size`` (aspect not kept);
            ``"crop"`` scales the short side to ``size`` and keeps the centre square (the
            centre box of the output's aspect ratio for ``(height, width)``).
        mean: Per-channel mean (R, G, B) of images scaled to [0, 1].
        std: Per-channel standard deviation (R, G, B).

    Returns:
        ``(tensor, rgb)``: a float32 tensor of shape ``(1, 3, size, size)`` equal to
        ``(rgb / 255 - mean) / std``, and the resized image as a ``uint8`` array of shape
        ``(size, size, 3)``.

    Raises:
        ImageLoadError: A ``ValueError``: a lazily opened PIL image cannot be decoded, or
            its mode cannot be converted to RGB.
        ValueError: If an argument is invalid or an array has the wrong shape.
        TypeError: If an array has the wrong dtype or ``image`` an unsupported type.

    Example:
        >>> import numpy as np
        >>> x, rgb = preprocess(np.full((10, 40, 3), 255, dtype=np.uint8), size=32)
        >>> tuple(x.shape), rgb.shape, rgb.dtype.name
        ((1, 3, 32, 32), (32, 32, 3), 'uint8')
    """
    _check_options(size, mode, mean, std)
    if not isinstance(image, (Image.Image, np.ndarray)):
        raise TypeError(
            f"image must be a PIL image or a uint8 NumPy array, got {type(image).__name__}"
        )
    return _resize_and_normalise(read_image(image, max_pixels=None), size, mode, mean, std)


def _resize_and_normalise(
    image: Image.Image,
    size: int | tuple[int, int],
    mode: ResizeMode,
    mean: Sequence[float],
    std: Sequence[float],
) -> tuple[torch.Tensor, np.ndarray]:
    """Resize an RGB image and build ``(tensor, rgb)`` from it (arguments already checked)."""
    rgb = np.array(_resize(image, size, mode), dtype=np.uint8)
    tensor = torch.from_numpy(rgb).permute(2, 0, 1).to(torch.float32).div_(255.0)
    mean_t = torch.tensor([float(v) for v in mean], dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor([float(v) for v in std], dtype=torch.float32).view(3, 1, 1)
    tensor = tensor.sub_(mean_t).div_(std_t).unsqueeze(0).contiguous()
    return tensor, rgb


def load_image(
    source: ImageSource,
    size: int | tuple[int, int] = 224,
    *,
    mode: ResizeMode = "resize",
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> tuple[torch.Tensor, np.ndarray]:
    """Load an image and turn it into a normalised model input.

    Decoding follows :func:`read_image`, resizing and normalisation :func:`preprocess`.
    The default (whole image resized to 224x224, ImageNet mean/std) matches the
    preprocessing of the RSI-Grad-CAM authors' code.

    Args:
        source: A file path, encoded ``bytes``, a binary file object, a PIL image, or a
            ``uint8`` array ``(H, W)`` / ``(H, W, 3)`` / ``(H, W, 4)``. No URLs.
        size: Output height and width: one number, or ``(height, width)``.
        mode: ``"resize"`` (whole image, aspect not kept) or ``"crop"`` (short side to
            ``size``, centre square; the centre box of the output's aspect ratio for
            ``(height, width)``).
        mean: Per-channel mean (R, G, B) of images scaled to [0, 1].
        std: Per-channel standard deviation (R, G, B).
        max_pixels: Largest accepted width x height (checked before decoding); ``None``
            disables the check.

    Returns:
        ``(tensor, rgb)``: the float32 input of shape ``(1, 3, size, size)``, and the same
        resized image as a ``uint8`` RGB array of shape ``(size, size, 3)`` for overlays.

    Raises:
        FileNotFoundError: If a path does not exist.
        IsADirectoryError: If a path is a directory.
        ImageLoadError: A ``ValueError``: the data is empty, truncated, not an image, in an
            unsupported mode, or larger than ``max_pixels``.
        ValueError: If an argument is invalid (or ``source`` is a URL).
        TypeError: If ``source`` has an unsupported type.

    Example:
        >>> from rsigradcam.models import efficientnet_lite0
        >>> x, rgb = load_image("cat.jpg")  # doctest: +SKIP
        >>> efficientnet_lite0()(x).argmax(1)  # doctest: +SKIP
        tensor([285])
    """
    _check_options(size, mode, mean, std)
    image = read_image(source, max_pixels=max_pixels)
    return _resize_and_normalise(image, size, mode, mean, std)


def denormalize(
    tensor: torch.Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> np.ndarray:
    """Undo the normalisation of :func:`preprocess`, giving a displayable image.

    Args:
        tensor: A normalised image of shape ``(3, H, W)`` or ``(1, 3, H, W)``.
        mean: The per-channel mean used to normalise it.
        std: The per-channel standard deviation used to normalise it.

    Returns:
        A ``uint8`` array of shape ``(H, W, 3)`` (values clipped to 0..255).

    Raises:
        ValueError: If the tensor does not hold exactly one 3-channel image.

    Example:
        >>> import numpy as np
        >>> x, rgb = preprocess(np.full((8, 8, 3), 200, dtype=np.uint8), size=8)
        >>> bool((denormalize(x) == rgb).all())
        True
    """
    image = tensor.detach()
    if image.dim() == 4 and image.shape[0] == 1:
        image = image[0]
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) or (1, 3, H, W) tensor, got {tuple(tensor.shape)}")
    mean_t = torch.tensor([float(v) for v in mean], dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor([float(v) for v in std], dtype=torch.float32).view(3, 1, 1)
    values = image.to(device="cpu", dtype=torch.float32) * std_t + mean_t
    values = (values * 255.0).round_().clamp_(0.0, 255.0)
    return values.to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
