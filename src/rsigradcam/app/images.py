"""The images of a source: a folder searched recursively, or a list file.

:func:`list_images` gives the images of ``rsigradcam explain-dataset`` and of the
evaluation, in the run's order: a folder's images sorted by their relative path (POSIX),
a list file's in its order, each with the class to explain when the list gives one.

Example:
    >>> [e.id for e in list_images("photos")]  # doctest: +SKIP
    ['cats/chelsea.png', 'coffee.jpg']
"""

from __future__ import annotations

import csv
import os
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from rsigradcam.app.errors import InputError
from rsigradcam.app.loading.classes import resolve_class

__all__ = ["ImageEntry", "image_suffixes", "list_images", "list_path_rule"]

_LIST_HEADERS = frozenset({"path", "file", "filename", "image", "id"})


@dataclass(frozen=True)
class ImageEntry:
    """One image of the dataset: its id, where to read it, and the class to explain.

    Attributes:
        id: The path relative to the source folder (POSIX), or as written in the list.
        path: The file to read.
        target: The class to explain; ``None`` for the top-1 class.
    """

    id: str
    path: str
    target: int | None = None


def image_suffixes() -> frozenset[str]:
    """File suffixes Pillow opens (EPS excluded: it would run Ghostscript)."""
    return frozenset(s for s, fmt in Image.registered_extensions().items() if fmt != "EPS")


def list_images(
    source: str | Path,
    *,
    exclude: str | Path | None = None,
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
) -> list[ImageEntry]:
    """List the images of a source folder or list file, in the run's order.

    Args:
        source: A folder (searched recursively for files with an image suffix, skipping
            hidden files and folders and not following links to folders; sorted by
            relative path) or a CSV list file
            (``path[,target]`` per row, an optional header (after which further columns
            are ignored, e.g. ``path,target,synset,name``), ``#`` comments; ``.tsv``
            files are tab-separated; relative paths start at the list file's folder,
            absolute paths are used as given).
        exclude: A folder not to search (the output folder).
        class_names: Class names, to read targets given by name.
        num_classes: Number of classes, to check targets given by id.

    Returns:
        The images in order, with absolute paths (a relative source starts at the
        current folder).

    Raises:
        InputError: The source does not exist or holds no image, none of a list's files
            exists (the message names the first ones and how paths are resolved), a list
            row is malformed, a target is unknown, or an id appears twice.

    Example:
        >>> [e.id for e in list_images("photos")]  # doctest: +SKIP
        ['cats/chelsea.png', 'coffee.jpg']
    """
    src = Path(source).absolute()
    if src.is_dir():
        entries = _scan_folder(src, Path(exclude) if exclude is not None else None)
    elif src.is_file():
        entries = _read_list(src, class_names, num_classes)
        _check_list_paths(src, entries)
    else:
        raise InputError(f"source not found: '{src}' (pass a folder of images or a list file)")
    if not entries:
        raise InputError(f"no images found in '{src}'")
    return entries


#: How many missing paths an error names.
_NAMED = 3


def list_path_rule(listing: Path) -> str:
    """How a list file's paths are read, for messages."""
    return (
        f"relative paths in a list start at the list file's folder, '{listing.parent}'; "
        "absolute paths are used as given"
    )


def _check_list_paths(listing: Path, entries: Sequence[ImageEntry]) -> None:
    """Refuse a list none of whose files exist, naming the first and the rule."""
    if not entries or any(Path(e.path).exists() for e in entries):
        return
    named = ", ".join(f"'{e.path}'" for e in entries[:_NAMED])
    more = f" and {len(entries) - _NAMED} more" if len(entries) > _NAMED else ""
    which = "the file" if len(entries) == 1 else f"none of the {len(entries)} files"
    verb = "does not exist" if len(entries) == 1 else "exists"
    raise InputError(
        f"{which} listed in '{listing}' {verb}: {named}{more} ({list_path_rule(listing)}); "
        "fix the paths or move the list"
    )


def _scan_folder(folder: Path, exclude: Path | None) -> list[ImageEntry]:
    suffixes = image_suffixes()
    skip = exclude.resolve() if exclude is not None else None
    found: list[str] = []
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and (here / d).resolve() != skip
        )
        relative = here.relative_to(folder)
        found.extend(
            (relative / name).as_posix()
            for name in files
            if not name.startswith(".") and Path(name).suffix.lower() in suffixes
        )
    return [ImageEntry(image_id, str(folder / image_id)) for image_id in sorted(found)]


def _read_list(
    path: Path, class_names: Sequence[str] | None, num_classes: int | None
) -> list[ImageEntry]:
    entries: list[ImageEntry] = []
    seen: dict[str, int] = {}
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with path.open(encoding="utf-8", newline="") as file:
        for number, row in enumerate(csv.reader(file, delimiter=delimiter), start=1):
            cells = [cell.strip() for cell in row]
            if not cells or not cells[0] or cells[0].startswith("#"):
                continue
            where = f"{path}:{number}"
            if not entries and not seen and cells[0].casefold() in _LIST_HEADERS:
                seen[""] = number  # a header row
                continue
            if len(cells) > 2 and "" in seen:
                cells = cells[:2]  # after a header, further columns are ignored
            if len(cells) > 2:
                raise InputError(
                    f"{where}: expected 'path' or 'path,target', got {len(cells)} fields "
                    "(quote paths that contain the delimiter)"
                )
            image_id = posixpath.normpath(Path(cells[0]).as_posix())
            if image_id in seen:
                raise InputError(f"{where}: {cells[0]!r} is listed twice (line {seen[image_id]})")
            seen[image_id] = number
            target = None
            if len(cells) == 2 and cells[1]:
                if num_classes is None:
                    raise InputError(f"{where}: targets need the model's number of classes")
                try:
                    target = resolve_class(cells[1], class_names, num_classes)
                except InputError as exc:
                    raise InputError(f"{where}: {exc}") from None
            file_path = Path(cells[0])
            resolved = file_path if file_path.is_absolute() else path.parent / file_path
            entries.append(ImageEntry(image_id, str(resolved), target))
    return entries
