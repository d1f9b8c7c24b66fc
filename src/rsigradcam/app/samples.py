"""The sample photos the demo, the evaluation and the benchmark use.

scikit-image's bundled photos are installed with the package (no download); the paper's
six sample images are used when a ``shared/data/paper-samples`` folder is found beside
the working folder or the source tree.

Example:
    >>> [name for name, _, _ in sample_images(DEMO_PHOTOS, None)]
    ['chelsea', 'coffee', 'camera']
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from rsigradcam.io import ImageSource

__all__ = [
    "DEMO_LAYERS",
    "DEMO_PHOTOS",
    "EVALUATION_PHOTOS",
    "SKIMAGE_PHOTOS",
    "find_paper_samples",
    "sample_images",
]

#: scikit-image photos by name -> the ``skimage.data`` function that returns it, with what
#: the embedded model sees (chelsea: Egyptian cat 0.80, coffee: espresso 0.86, camera:
#: tripod 0.94, rocket: missile 0.26, motorcycle: moped 0.47).
SKIMAGE_PHOTOS: dict[str, str] = {
    "chelsea": "chelsea",
    "coffee": "coffee",
    "camera": "camera",
    "rocket": "rocket",
    "motorcycle": "stereo_motorcycle",
}
#: The photos the demo explains (the ones the embedded model is sure of).
DEMO_PHOTOS: tuple[str, ...] = ("chelsea", "coffee", "camera")
#: The photos ``rsigradcam evaluate`` uses when no images are given.
EVALUATION_PHOTOS: tuple[str, ...] = tuple(SKIMAGE_PHOTOS)
#: Layers of the embedded model shown by the demo and evaluated by default: a middle
#: block, a late block, and the head convolution.
DEMO_LAYERS: tuple[str, ...] = ("blocks.5", "blocks.10", "head")


def find_paper_samples(start: Path | None = None) -> Path | None:
    """Find ``shared/data/paper-samples`` beside the working folder or the source tree."""
    roots = [Path.cwd() if start is None else start, Path(__file__).resolve().parents[4]]
    for root in roots:
        for base in (root, *root.parents[:2]):
            candidate = base / "shared" / "data" / "paper-samples"
            if candidate.is_dir():
                return candidate
    return None


def sample_images(
    photos: Sequence[str], samples: Path | None
) -> Iterator[tuple[str, str, ImageSource]]:
    """Yield (name, description, image) for scikit-image ``photos``, then the paper samples.

    Args:
        photos: Names from :data:`SKIMAGE_PHOTOS`.
        samples: A folder of .jpg images (sorted by name), or ``None`` for none.
    """
    from skimage import data

    for name in photos:
        function = SKIMAGE_PHOTOS[name]
        value = getattr(data, function)()
        image = value[0] if isinstance(value, tuple) else value
        yield name, f"skimage.data.{function}()", image
    if samples is not None:
        for path in sorted(samples.glob("*.jpg")):
            yield path.stem, str(path), path
