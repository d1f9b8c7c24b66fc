"""Tests for image decoding and preprocessing."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from rsigradcam.io import (
    DEFAULT_MAX_PIXELS,
    ImageLoadError,
    denormalize,
    load_image,
    preprocess,
    read_image,
)
from rsigradcam.models import IMAGENET_MEAN, IMAGENET_STD
from tests.helpers import png_header_only

RED = (255, 0, 0)
BLUE = (0, 0, 255)
GREEN = (0, 255, 0)
WHITE = (255, 255, 255)


def _noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _check_output(x: torch.Tensor, rgb: np.ndarray, size: int = 224) -> None:
    assert x.shape == (1, 3, size, size)
    assert x.dtype == torch.float32
    assert x.is_contiguous()
    assert rgb.shape == (size, size, 3)
    assert rgb.dtype == np.uint8
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    expected = (torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255 - mean) / std
    torch.testing.assert_close(x, expected, rtol=0, atol=1e-5)


def _pixel(rgb: np.ndarray, row: int, col: int) -> tuple[int, ...]:
    return tuple(int(v) for v in rgb[row, col])


def _close(actual: tuple[int, ...], expected: tuple[int, ...], tol: int = 40) -> bool:
    return all(abs(a - e) <= tol for a, e in zip(actual, expected, strict=True))


# ------------------------------------------------------------------------------------------
# Sources and preprocessing
# ------------------------------------------------------------------------------------------


def test_rgb_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    _noise(320, 240).save(path, quality=90)
    x, rgb = load_image(path)
    _check_output(x, rgb)
    assert float(x.min()) > -2.2 and float(x.max()) < 2.7


def test_all_source_kinds_agree(tmp_path: Path) -> None:
    path = tmp_path / "image.png"
    image = _noise(90, 60)
    image.save(path)
    data = path.read_bytes()
    reference, reference_rgb = load_image(str(path), size=64)
    sources: list[object] = [
        path,
        data,
        bytearray(data),
        io.BytesIO(data),
        Image.open(path),
        np.asarray(image),
    ]
    for source in sources:
        x, rgb = load_image(source, size=64)  # type: ignore[arg-type]
        _check_output(x, rgb, 64)
        assert torch.equal(x, reference)
        assert np.array_equal(rgb, reference_rgb)
    via_preprocess, _ = preprocess(image, 64)
    assert torch.equal(via_preprocess, reference)


def test_file_objects_are_left_open(tmp_path: Path) -> None:
    path = tmp_path / "image.png"
    _noise(20, 20).save(path)
    with path.open("rb") as handle:
        load_image(handle, size=16)
        assert not handle.closed


def test_numpy_arrays_of_each_layout() -> None:
    gray = np.full((30, 40), 100, dtype=np.uint8)
    for array in [gray, gray[:, :, None], np.dstack([gray] * 3)]:
        _, rgb = load_image(array, size=8)
        assert (rgb == 100).all()
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)  # fully transparent black
    _, rgb = load_image(rgba, size=8)
    assert (rgb == 255).all()


def test_numpy_arrays_are_validated() -> None:
    with pytest.raises(TypeError, match="uint8"):
        load_image(np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        load_image(np.zeros((10, 10, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="empty"):
        load_image(np.zeros((0, 10, 3), dtype=np.uint8))
    with pytest.raises(TypeError, match="source must be"):
        load_image(12345)  # type: ignore[arg-type]


def test_resize_keeps_everything_and_crop_keeps_the_centre() -> None:
    # 300 x 100: red left third, green centre square, blue right third.
    array = np.zeros((100, 300, 3), dtype=np.uint8)
    array[:, :100] = RED
    array[:, 100:200] = GREEN
    array[:, 200:] = BLUE
    _, resized = load_image(array, size=60)
    assert _pixel(resized, 30, 2) == RED
    assert _pixel(resized, 30, 30) == GREEN
    assert _pixel(resized, 30, 57) == BLUE
    _, cropped = load_image(array, size=60, mode="crop")
    # Only the outermost columns see the neighbouring colours through the filter.
    assert (cropped[:, 1:59] == GREEN).all()
    assert cropped[:, [0, 59], 1].min() > 200


def test_crop_equals_resize_short_side_then_centre_crop() -> None:
    image = _noise(300, 100)
    _, cropped = load_image(image, size=60, mode="crop")
    reference = np.asarray(image.resize((180, 60), Image.Resampling.BILINEAR))[:, 60:120]
    assert np.array_equal(cropped, reference)


def test_image_already_at_size_is_unchanged() -> None:
    array = np.asarray(_noise(32, 32))
    _, rgb = load_image(array, size=32)
    assert np.array_equal(rgb, array)


@pytest.mark.parametrize("shape", [(10, 4000), (4000, 10), (1, 1), (3, 700)])
@pytest.mark.parametrize("mode", ["resize", "crop"])
def test_extreme_sizes_and_aspect_ratios(shape: tuple[int, int], mode: str) -> None:
    height, width = shape
    image = _noise(width, height)
    x, rgb = load_image(image, size=48, mode=mode)  # type: ignore[arg-type]
    _check_output(x, rgb, 48)


def test_invalid_arguments() -> None:
    array = np.zeros((8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="size"):
        load_image(array, size=0)
    with pytest.raises(ValueError, match="mode"):
        load_image(array, mode="stretch")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mean"):
        load_image(array, mean=(0.5, 0.5))
    with pytest.raises(ValueError, match="std"):
        load_image(array, std=(0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match="max_pixels"):
        load_image(array, max_pixels=0)


def test_custom_normalisation() -> None:
    x, rgb = load_image(
        np.full((8, 8, 3), 255, dtype=np.uint8), size=8, mean=(0, 0, 0), std=(1, 1, 1)
    )
    assert torch.equal(x, torch.ones(1, 3, 8, 8))
    assert (rgb == 255).all()


def test_denormalize_inverts_preprocess() -> None:
    x, rgb = preprocess(_noise(40, 30), 24)
    assert np.array_equal(denormalize(x), rgb)
    assert np.array_equal(denormalize(x[0]), rgb)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        denormalize(torch.zeros(2, 3, 4, 4))


# ------------------------------------------------------------------------------------------
# Modes
# ------------------------------------------------------------------------------------------


def test_grayscale_png(tmp_path: Path) -> None:
    path = tmp_path / "gray.png"
    Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), (16, 1))).save(path)
    x, rgb = load_image(path, size=32)
    _check_output(x, rgb, 32)
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()


def test_la_png_is_composited_on_white(tmp_path: Path) -> None:
    path = tmp_path / "la.png"
    image = Image.new("LA", (40, 20), (80, 255))
    image.paste((0, 0), (20, 0, 40, 20))  # right half: transparent black
    image.save(path)
    _, rgb = load_image(path, size=40)
    assert _close(_pixel(rgb, 20, 2), (80, 80, 80), 2)
    assert _pixel(rgb, 20, 38) == WHITE


def test_rgba_png_is_composited_on_white(tmp_path: Path) -> None:
    path = tmp_path / "rgba.png"
    image = Image.new("RGBA", (40, 20), (*RED, 255))
    image.paste((0, 0, 0, 0), (20, 0, 40, 20))
    image.save(path)
    _, rgb = load_image(path, size=40)
    assert _pixel(rgb, 20, 2) == RED
    assert _pixel(rgb, 20, 38) == WHITE
    half = Image.new("RGBA", (4, 4), (0, 0, 0, 128))
    _, rgb_half = load_image(half, size=4)
    assert _close(_pixel(rgb_half, 1, 1), (127, 127, 127), 2)


def test_palette_png_with_and_without_transparency(tmp_path: Path) -> None:
    image = Image.new("P", (40, 20), 1)
    image.putpalette([0, 0, 0, *RED, *BLUE] + [0] * (253 * 3))
    image.paste(0, (20, 0, 40, 20))
    opaque = tmp_path / "opaque.png"
    image.save(opaque)
    _, rgb = load_image(opaque, size=40)
    assert _pixel(rgb, 10, 2) == RED
    assert _pixel(rgb, 10, 38) == (0, 0, 0)
    transparent = tmp_path / "transparent.png"
    image.save(transparent, transparency=0)
    _, rgb = load_image(transparent, size=40)
    assert _pixel(rgb, 10, 2) == RED
    assert _pixel(rgb, 10, 38) == WHITE


def test_16_bit_png_keeps_its_full_range(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    ramp = (np.arange(256, dtype=np.uint32) * 257).astype(np.uint16)
    Image.fromarray(np.tile(ramp, (256, 1))).save(path)
    with Image.open(path) as check:
        assert check.mode.startswith("I")  # really stored as 16-bit
    _, rgb = load_image(path, size=256)
    assert rgb.min() == 0 and rgb.max() == 255
    assert np.array_equal(rgb[0, :, 0], np.arange(256))
    assert (rgb[..., 0] == rgb[..., 2]).all()


def test_16_bit_big_endian_and_32_bit_modes() -> None:
    ramp = (np.arange(256, dtype=np.uint32) * 257).astype(np.uint16)
    big_endian = Image.frombytes("I;16B", (256, 1), ramp.astype(">u2").tobytes())
    wide = Image.fromarray(ramp.astype(np.int32)[None, :])
    assert wide.mode == "I"
    for image in [big_endian, wide]:
        rgb = np.asarray(read_image(image))
        assert np.array_equal(rgb[0, :, 1], np.arange(256))
    floats = Image.fromarray(np.linspace(0.0, 1.0, 256, dtype=np.float32)[None, :])
    assert floats.mode == "F"
    rgb = np.asarray(read_image(floats))
    assert rgb[0, 0, 0] == 0 and rgb[0, -1, 0] == 255


@pytest.mark.parametrize("mode", ["1", "LAB", "HSV", "YCbCr", "RGBX", "RGBa", "La", "PA", "I;16L"])
def test_other_modes_become_rgb(mode: str) -> None:
    rgb = read_image(Image.new(mode, (6, 4)))
    assert rgb.mode == "RGB"
    assert rgb.size == (6, 4)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(path)
    with Image.open(path) as check:
        assert check.mode == "CMYK"
    _, rgb = load_image(path, size=16)
    assert _close(_pixel(rgb, 8, 8), RED)


def test_animated_gif_uses_first_frame(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (20, 20), color) for color in (RED, BLUE, GREEN)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(path) as check:
        assert check.n_frames == 3
    _, rgb = load_image(path, size=20)
    assert _close(_pixel(rgb, 10, 10), RED, 5)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # Stored 200 wide x 100 tall, red left half; orientation 6 = rotate 90 degrees clockwise
    # to display, so the upright image is 100 wide x 200 tall with red on top.
    path = tmp_path / "rotated.jpg"
    stored = Image.new("RGB", (200, 100), BLUE)
    stored.paste(RED, (0, 0, 100, 100))
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, exif=exif, quality=95)
    upright = read_image(path)
    assert upright.size == (100, 200)
    _, rgb = load_image(path, size=64)
    assert _close(_pixel(rgb, 5, 32), RED)
    assert _close(_pixel(rgb, 58, 32), BLUE)


def test_pil_source_is_not_modified() -> None:
    image = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    load_image(image, size=8)
    assert image.mode == "RGBA"
    assert image.getpixel((0, 0)) == (0, 0, 0, 0)


# ------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------


def _assert_one_line(error: pytest.ExceptionInfo[BaseException]) -> None:
    assert "\n" not in str(error.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.jpg"
    with pytest.raises(FileNotFoundError, match="not found") as error:
        load_image(path)
    assert str(path) in str(error.value)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match="directory") as error:
        load_image(tmp_path)
    assert str(tmp_path) in str(error.value)


def test_urls_are_refused() -> None:
    with pytest.raises(ValueError, match="URLs are not supported"):
        load_image("https://example.com/cat.jpg")


def test_empty_file_and_empty_bytes(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="not a readable image: the file is empty") as error:
        load_image(path)
    assert str(path) in str(error.value)
    with pytest.raises(ValueError, match="empty"):
        load_image(b"")


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_files_raise(tmp_path: Path, suffix: str) -> None:
    assert not ImageFile.LOAD_TRUNCATED_IMAGES
    whole = tmp_path / f"whole{suffix}"
    _noise(300, 200).save(whole)
    data = whole.read_bytes()
    path = tmp_path / f"truncated{suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match=r"is not a readable image: .*truncated") as error:
        load_image(path)
    assert isinstance(error.value, ValueError)
    assert str(path) in str(error.value)
    _assert_one_line(error)
    with pytest.raises(ValueError, match="not a readable image"):
        load_image(data[: len(data) // 2])
    with Image.open(path) as lazy, pytest.raises(ImageLoadError, match="truncated"):
        preprocess(lazy)


def test_text_file_renamed_to_jpg(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("This is not an image.\n" * 20)
    with pytest.raises(ValueError, match="is not a readable image: not a recognised") as error:
        load_image(path)
    assert str(path) in str(error.value)
    _assert_one_line(error)


def test_decompression_bomb_refused_by_pillow_check(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(50_000, 50_000))
    limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ValueError, match="too large") as error:
        load_image(path)
    message = str(error.value)
    assert str(path) in message
    assert "2,500,000,000 pixels" in message
    assert f"{DEFAULT_MAX_PIXELS:,}" in message
    _assert_one_line(error)
    assert limit == Image.MAX_IMAGE_PIXELS


def test_decompression_bomb_refused_by_max_pixels(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(5_000, 4_000))
    with pytest.raises(ValueError, match="too large") as error:
        load_image(path, max_pixels=10_000_000)
    message = str(error.value)
    assert str(path) in message
    assert "5000x4000" in message and "10,000,000" in message
    _assert_one_line(error)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_default_limit_is_enforced_below_pillows_hard_limit() -> None:
    with pytest.raises(ValueError, match="12000x10000"):
        load_image(png_header_only(12_000, 10_000))


def test_max_pixels_on_real_image_and_pil_global_untouched(tmp_path: Path) -> None:
    path = tmp_path / "small.png"
    _noise(40, 30).save(path)
    limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ValueError, match="40x30 = 1,200 pixels exceeds the limit of 1,000"):
        load_image(path, max_pixels=1_000)
    with pytest.raises(ValueError, match="too large"):
        load_image(Image.open(path), max_pixels=1_000)
    # A limit above Pillow's own is honoured (Pillow's global is raised and restored).
    load_image(path, max_pixels=10 * 2 * (limit or 1))
    load_image(path, max_pixels=None)
    assert limit == Image.MAX_IMAGE_PIXELS
