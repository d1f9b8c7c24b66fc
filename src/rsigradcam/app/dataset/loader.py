"""Decode a dataset's images for a :class:`torch.utils.data.DataLoader`, never raising.

:class:`ImageFiles` turns an index into a decoded image, or into the reason it cannot be
read; :func:`collate_images` stacks a batch's decoded images and sets the failures apart,
so one bad file never stops a run.

Example:
    >>> loader = DataLoader(ImageFiles(paths), batch_size=8, collate_fn=collate_images)
    ...     # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import Dataset

from rsigradcam.app.settings import InputFormat
from rsigradcam.files import one_line

__all__ = ["ImageBatch", "ImageFiles", "collate_images"]


class ImageFiles(Dataset[tuple[int, Tensor | None, str | None]]):
    """Decode image files for a DataLoader, never raising.

    Item ``i`` is ``(i, tensor, None)``, or ``(i, None, reason)`` for a file that cannot be
    read.

    Args:
        paths: The image files.
        input_format: The model input's size and normalisation (default: 224x224,
            ImageNet); the whole image is resized, as :func:`rsigradcam.io.load_image`.
    """

    def __init__(self, paths: Sequence[str], input_format: InputFormat | None = None) -> None:
        self.paths = paths
        self.input_format = input_format or InputFormat()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, Tensor | None, str | None]:
        try:
            tensor, _ = self.input_format.load(self.paths[index])
        except FileNotFoundError:
            return index, None, "file not found"
        except (ValueError, OSError) as exc:
            return index, None, one_line(str(exc)) or type(exc).__name__
        except Exception as exc:  # a decoder bug must not stop the run either
            return index, None, f"{type(exc).__name__}: {one_line(str(exc))}"
        return index, tensor[0], None


@dataclass(frozen=True)
class ImageBatch:
    """A batch from :func:`collate_images`.

    Attributes:
        indices: Every image of the batch.
        ok: The images that were decoded, in order.
        images: Those images, (len(ok), 3, H, W); ``None`` when there are none.
        failures: ``(index, reason)`` for the others.
    """

    indices: list[int]
    ok: list[int]
    images: Tensor | None
    failures: list[tuple[int, str]]

    def pin_memory(self) -> ImageBatch:
        """The batch with its images in page-locked memory.

        ``DataLoader(pin_memory=True)`` calls this, so that the copy to a GPU can overlap
        the work before it.
        """
        images = self.images.pin_memory() if self.images is not None else None
        return ImageBatch(self.indices, self.ok, images, self.failures)


def collate_images(items: Sequence[tuple[int, Tensor | None, str | None]]) -> ImageBatch:
    """Stack the decoded images of a batch and set the failures apart."""
    ok = [(i, t) for i, t, _ in items if t is not None]
    failures = [(i, reason or "unreadable") for i, t, reason in items if t is None]
    images = torch.stack([t for _, t in ok]) if ok else None
    return ImageBatch([i for i, _, _ in items], [i for i, _ in ok], images, failures)
