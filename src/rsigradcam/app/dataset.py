"""Explain a dataset: a folder or a list of images, in shards, resumable, on torch.distributed.

:func:`explain_dataset` is what ``rsigradcam explain-dataset`` runs. The images are
decoded by a :class:`torch.utils.data.DataLoader` (with worker processes) and explained
in batches; the results go to shards written atomically (see :mod:`rsigradcam.app.shards`).

- **Order.** A folder is scanned recursively for image files (hidden files and folders,
  and the output folder, are skipped); the image id is the path relative to the folder
  (POSIX), and the images are sorted by id. A list file keeps its order.
- **Shards.** Shard ``k`` holds the images ``k * shard_size`` to
  ``(k + 1) * shard_size - 1``. Batches never cross a shard boundary and path chunks come
  from a fixed memory budget, so a shard's results do not depend on which process
  explains it, or when (bit for bit, given the same number of torch threads).
- **Resuming.** A shard is finished when its ``.npz`` exists. A run into a folder that
  already holds one skips the finished shards and redoes the others, provided that every
  parameter that affects the results is the same (they are kept in ``run.json``);
  otherwise it is refused, naming the parameters that differ.
- **Processes.** Under ``torchrun`` (the ``RANK`` and ``WORLD_SIZE`` variables), each
  process joins a ``torch.distributed`` process group (gloo on CPU, nccl on GPU, or the
  group that the caller already started). Rank 0 checks the folder and writes
  ``run.json``, then lists the unfinished shards; rank ``r`` of ``w`` explains the
  unfinished shards ``r, r + w, r + 2w...`` of that list. After a barrier rank 0 joins
  the shards' lines into ``manifest.jsonl`` and ``errors.jsonl``.
- **Errors.** An image that cannot be read, or whose explanation fails, is recorded with
  the reason and the run goes on.
- **One run at a time.** Rank 0 holds an advisory lock on ``OUT/.lock`` (``flock``) from
  its checks to the final merge, so a second run into the same folder is refused, naming
  the process that holds it. The system drops the lock when that process ends, however it
  ends, so a killed run never leaves a stale lock behind. (On systems without ``fcntl``,
  and on file systems that ignore ``flock``, there is no lock.)
"""

from __future__ import annotations

import contextlib
import csv
import getpass
import hashlib
import json
import math
import os
import posixpath
import socket
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from rsigradcam.app.explain import prepare_output_dir
from rsigradcam.app.loading import (
    FIXED_BUDGET_MB,
    INPUT_SIZE,
    InputError,
    LoadedModel,
    check_device,
    check_layers,
    load_model,
    model_sha256,
    probe_layers,
    resolve_class,
)
from rsigradcam.app.shards import (
    ShardBuffer,
    merge_shards,
    rank_shards,
    shard_done,
    shard_names,
    write_lines,
)
from rsigradcam.core.targets import Output
from rsigradcam.files import one_line, save_json
from rsigradcam.heatmaps import IMAGES, RUN, SHARD_DIR, read_lines
from rsigradcam.io import load_image
from rsigradcam.methods import METHODS as CAM_METHODS
from rsigradcam.methods import create_cam, method_layers

__all__ = [
    "DATASET_METHODS",
    "LOCK",
    "DatasetOptions",
    "DatasetSummary",
    "HeatmapDtype",
    "ImageBatch",
    "ImageEntry",
    "ImageFiles",
    "RankZeroError",
    "Ranks",
    "collate_images",
    "explain_dataset",
    "explanation_pairs",
    "list_images",
    "parse_methods",
    "run_lock",
]

HeatmapDtype = Literal["uint8", "float16"]
#: Methods ``explain-dataset`` runs, by the name ``--method`` accepts (``all``: every one).
DATASET_METHODS: tuple[str, ...] = tuple(CAM_METHODS)
#: How long a process waits for the others at a barrier (the slowest rank's last shard).
BARRIER_TIMEOUT = timedelta(hours=24)
#: The lock file that rank 0 holds in OUT while a run writes there.
LOCK = ".lock"
_LIST_HEADERS = frozenset({"path", "file", "filename", "image", "id"})


class RankZeroError(Exception):
    """Raised on ranks other than 0 when rank 0 refused the run (it reports why).

    Attributes:
        exit_code: The exit code rank 0 exits with (2 for a usage error).
    """

    def __init__(self, exit_code: int) -> None:
        super().__init__(f"rank 0 stopped the run (exit code {exit_code})")
        self.exit_code = exit_code


# --------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetOptions:
    """Every argument of a dataset run.

    Attributes:
        source: A folder of images (searched recursively), or a list file: CSV (``.tsv``:
            tab-separated) with a path per row and optionally a target class (id or name)
            in a second column; paths are relative to the list file's folder.
        out: The output folder.
        model: A ``--model`` argument (see :func:`rsigradcam.app.loading.load_model`).
        layers: Layer names; empty means the last layer with a spatial map.
        methods: Some of :data:`DATASET_METHODS`.
        steps: RSI-Grad-CAM steps m.
        output: The explained score, ``"softmax"`` or ``"logits"``, for every method.
        batch_size: Images explained together.
        shard_size: Images per shard.
        heatmap_dtype: ``"uint8"`` (round(255 h)) or ``"float16"``.
        device: ``"cpu"`` or ``"cuda"`` (under torchrun, ``cuda`` is ``cuda:LOCAL_RANK``).
        workers: DataLoader worker processes decoding images (0: in the main process).
        threads: Torch threads per process; ``None``: the CPU cores divided by the
            processes on this machine.
    """

    source: Path
    out: Path
    model: str = "efficientnet_lite0"
    layers: tuple[str, ...] = ()
    methods: tuple[str, ...] = ("rsi",)
    steps: int = 50
    output: Output = "softmax"
    batch_size: int = 8
    shard_size: int = 256
    heatmap_dtype: HeatmapDtype = "uint8"
    device: str = "cpu"
    workers: int = 2
    threads: int | None = None

    def check(self) -> None:
        """Raise :class:`InputError` for an argument that cannot work."""
        if not Path(self.source).exists():
            raise InputError(
                f"source not found: '{self.source}' (pass a folder of images or a list file)"
            )
        for name in ("steps", "batch_size", "shard_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise InputError(f"workers must be 0 or more, got {self.workers!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise InputError(f"threads must be a positive integer or None, got {self.threads!r}")
        if self.heatmap_dtype not in get_args(HeatmapDtype):
            raise InputError(
                f"heatmap dtype must be 'uint8' or 'float16', not {self.heatmap_dtype!r}"
            )
        if self.output not in ("softmax", "logits"):
            raise InputError(f"output must be 'softmax' or 'logits', not {self.output!r}")
        parse_methods(self.methods)


def parse_methods(values: Sequence[str]) -> tuple[str, ...]:
    """Turn ``--method`` values (repeated, or comma lists; ``all``) into method names.

    Example:
        >>> parse_methods(["rsi,gradcam", "rsi"])
        ('rsi', 'gradcam')
    """
    names: list[str] = []
    for value in values:
        for part in value.split(","):
            name = part.strip().lower()
            if name == "all":
                names.extend(DATASET_METHODS)
            elif name in DATASET_METHODS:
                names.append(name)
            elif name:
                raise InputError(
                    f"unknown method {part.strip()!r}; use {', '.join(DATASET_METHODS)} or all"
                )
    if not names:
        raise InputError(f"no method given; use {', '.join(DATASET_METHODS)} or all")
    return tuple(dict.fromkeys(names))


def explanation_pairs(methods: Sequence[str], layers: Sequence[str]) -> list[tuple[str, str]]:
    """The (method, layer) pairs a run computes, in the order they are stored.

    Example:
        >>> explanation_pairs(["rsi", "ig"], ["blocks.10", "head"])
        [('rsi', 'blocks.10'), ('rsi', 'head'), ('ig', 'input')]
    """
    return [(m, layer) for m in methods for layer in method_layers(m, layers)]


# --------------------------------------------------------------------------------------
# The images
# --------------------------------------------------------------------------------------


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


def _image_suffixes() -> frozenset[str]:
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
            (``path[,target]`` per row, an optional header, ``#`` comments; ``.tsv``
            files are tab-separated; relative paths start at the list file's folder).
        exclude: A folder not to search (the output folder).
        class_names: Class names, to read targets given by name.
        num_classes: Number of classes, to check targets given by id.

    Returns:
        The images in order, with absolute paths (a relative source starts at the
        current folder).

    Raises:
        InputError: The source does not exist or holds no image, a list row is malformed,
            a target is unknown, or an id appears twice.

    Example:
        >>> [e.id for e in list_images("photos")]  # doctest: +SKIP
        ['cats/chelsea.png', 'coffee.jpg']
    """
    src = Path(source).absolute()
    if src.is_dir():
        entries = _scan_folder(src, Path(exclude) if exclude is not None else None)
    elif src.is_file():
        entries = _read_list(src, class_names, num_classes)
    else:
        raise InputError(f"source not found: '{src}' (pass a folder of images or a list file)")
    if not entries:
        raise InputError(f"no images found in '{src}'")
    return entries


def _scan_folder(folder: Path, exclude: Path | None) -> list[ImageEntry]:
    suffixes = _image_suffixes()
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


class ImageFiles(Dataset[tuple[int, Tensor | None, str | None]]):
    """Decode image files for a DataLoader, never raising.

    Item ``i`` is ``(i, tensor, None)``, or ``(i, None, reason)`` for a file that cannot be
    read.

    Args:
        paths: The image files.
        size: Height and width of the model input (whole image resized, ImageNet
            normalisation, as :func:`rsigradcam.io.load_image`).
    """

    def __init__(self, paths: Sequence[str], size: int = INPUT_SIZE) -> None:
        self.paths = paths
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, Tensor | None, str | None]:
        try:
            tensor, _ = load_image(self.paths[index], size=self.size)
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


def collate_images(items: Sequence[tuple[int, Tensor | None, str | None]]) -> ImageBatch:
    """Stack the decoded images of a batch and set the failures apart."""
    ok = [(i, t) for i, t, _ in items if t is not None]
    failures = [(i, reason or "unreadable") for i, t, reason in items if t is None]
    images = torch.stack([t for _, t in ok]) if ok else None
    return ImageBatch([i for i, _, _ in items], [i for i, _ in ok], images, failures)


# --------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ranks:
    """The place of this process in a torchrun job (one process: rank 0 of 1).

    Attributes:
        rank: Global rank.
        world_size: Number of processes.
        local_rank: Rank on this machine (the GPU it uses).
        local_world_size: Number of processes on this machine.
        distributed: Whether torchrun's variables were found.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    distributed: bool = False

    @classmethod
    def from_env(cls) -> Ranks:
        """Read ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE`` (torchrun)."""
        env = os.environ
        if "RANK" not in env or "WORLD_SIZE" not in env:
            return cls()
        world = int(env["WORLD_SIZE"])
        return cls(
            int(env["RANK"]),
            world,
            int(env.get("LOCAL_RANK", "0")),
            int(env.get("LOCAL_WORLD_SIZE", str(world))),
            True,
        )


def _cpu_count() -> int:
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _rank_device(spec: str, ranks: Ranks) -> torch.device:
    device = check_device(spec)
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        device = torch.device("cuda", ranks.local_rank)
    return device


@contextlib.contextmanager
def _process_group(ranks: Ranks, device: torch.device) -> Iterator[None]:
    """Join the torchrun job's process group (or use the one already started)."""
    if not ranks.distributed or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=BARRIER_TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _barrier(ranks: Ranks, device: torch.device) -> None:
    if ranks.distributed:
        if dist.get_backend() == "nccl" and device.index is not None:
            dist.barrier(device_ids=[device.index])
        else:
            dist.barrier()


def _from_rank_zero(value: Any, ranks: Ranks) -> Any:
    """Rank 0's ``value``, on every rank."""
    if not ranks.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# --------------------------------------------------------------------------------------
# The run's parameters
# --------------------------------------------------------------------------------------


def _entry_line(entry: ImageEntry) -> dict[str, Any]:
    return {"id": entry.id, "path": entry.path, "target": entry.target}


def _entries_sha256(entries: Sequence[ImageEntry]) -> str:
    digest = hashlib.sha256()
    for entry in entries:
        digest.update((json.dumps(_entry_line(entry)) + "\n").encode())
    return digest.hexdigest()


def _budget_mb(device: torch.device) -> float:
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        return float(total // 4 // 2**20)
    return FIXED_BUDGET_MB


def _parameters(
    options: DatasetOptions,
    loaded: LoadedModel,
    layers: Sequence[str],
    entries: Sequence[ImageEntry],
) -> dict[str, Any]:
    """Everything that affects the results (compared when a run is resumed)."""
    from rsigradcam import __version__

    methods = parse_methods(options.methods)
    return {
        "source": str(options.source.resolve()),
        "images": len(entries),
        "images_sha256": _entries_sha256(entries),
        "model": options.model,
        "model_sha256": model_sha256(loaded.model),
        "num_classes": loaded.num_classes,
        "layers": list(layers),
        "methods": list(methods),
        "explanations": [list(pair) for pair in explanation_pairs(methods, layers)],
        "steps": options.steps,
        "output": options.output,
        "baseline": "black",
        "rule": "trapezoid",
        "input_size": INPUT_SIZE,
        "heatmap_size": [INPUT_SIZE, INPUT_SIZE],
        "heatmap_dtype": options.heatmap_dtype,
        "batch_size": options.batch_size,
        "shard_size": options.shard_size,
        "device": loaded.device.type,
        "memory_budget_mb": _budget_mb(loaded.device),
        "version": __version__,
    }


def _differences(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    changed = []
    for key in sorted(set(before) | set(now)):
        old, new = before.get(key), now.get(key)
        if old != new:
            changed.append(
                f"{key} differs" if key.endswith("sha256") else f"{key} {old!r} -> {new!r}"
            )
    return changed


def _prepare_run(
    options: DatasetOptions, loaded: LoadedModel, layers: Sequence[str], out: Path
) -> tuple[list[ImageEntry], dict[str, Any], list[int]]:
    """On rank 0: check the prepared output folder ``out``; return the images, params, todo."""
    entries = list_images(
        options.source,
        exclude=out,
        class_names=loaded.class_names,
        num_classes=loaded.num_classes,
    )
    params = _parameters(options, loaded, layers, entries)
    run_path = out / RUN
    shards = out / SHARD_DIR
    if run_path.is_file():
        try:
            stored = json.loads(run_path.read_text(encoding="utf-8"))["parameters"]
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"'{run_path}' is not a run.json of explain-dataset: {exc}") from exc
        changed = _differences(stored, params)
        if changed:
            raise InputError(
                f"--out '{out}' holds a run with other parameters ({'; '.join(changed)}); "
                "run with the same arguments to resume it, or choose another --out"
            )
    else:
        if shards.is_dir() and any(shards.iterdir()):
            raise InputError(f"--out '{out}' holds shards but no {RUN}; choose another --out")
        write_lines(out / IMAGES, (_entry_line(e) for e in entries))
        save_json(
            {
                "format": "rsigradcam-dataset/1",
                "parameters": params,
                "shards": math.ceil(len(entries) / options.shard_size),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "torch": torch.__version__,
            },
            run_path,
        )
    shards.mkdir(exist_ok=True)
    for stale in (*shards.glob(".*.tmp"), *out.glob(".*.tmp")):
        stale.unlink(missing_ok=True)
    names = shard_names(math.ceil(len(entries) / options.shard_size))
    todo = [k for k, name in enumerate(names) if not shard_done(out, name)]
    return entries, params, todo


def _read_run(out: Path) -> tuple[list[ImageEntry], dict[str, Any]]:
    params = json.loads((out / RUN).read_text(encoding="utf-8"))["parameters"]
    entries = [ImageEntry(e["id"], e["path"], e["target"]) for e in read_lines(out / IMAGES)]
    return entries, params


# --------------------------------------------------------------------------------------
# Explaining batches
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _BatchResult:
    targets: np.ndarray
    probabilities: np.ndarray
    scores: np.ndarray
    baseline_scores: np.ndarray
    completeness: np.ndarray
    heatmaps: list[np.ndarray]


class _BatchExplainer:
    """Classify a batch, then explain each image's class with every method and layer."""

    def __init__(
        self, loaded: LoadedModel, params: dict[str, Any], heatmap_dtype: HeatmapDtype
    ) -> None:
        self.model = loaded.model
        self.device = loaded.device
        layers: list[str] = params["layers"]
        budget = float(params["memory_budget_mb"])
        self.cams = [
            (
                m,
                create_cam(
                    m,
                    loaded.model,
                    layers,
                    steps=params["steps"],
                    output=params["output"],
                    memory_budget_mb=budget,
                ),
            )
            for m in params["methods"]
        ]
        self.layers = layers
        self.heatmap_dtype = heatmap_dtype

    def __call__(self, images: Tensor, given: Sequence[int | None]) -> _BatchResult:
        x = images.to(self.device)
        with torch.no_grad():
            probabilities = torch.softmax(self.model(x).float(), dim=1)
        targets = probabilities.argmax(dim=1)
        for i, target in enumerate(given):
            if target is not None:
                targets[i] = target
        columns: dict[str, list[Tensor]] = {"scores": [], "baseline": [], "completeness": []}
        heatmaps: list[np.ndarray] = []
        for method, cam in self.cams:
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", r".* map at layer .* is zero everywhere", RuntimeWarning
                )
                found = cam(x, targets=targets)
            by_layer = found if isinstance(found, dict) else {found.layer: found}
            for layer in method_layers(method, self.layers):
                exp = by_layer[layer]
                columns["scores"].append(exp.scores.float())
                columns["baseline"].append(exp.baseline_scores.float())
                columns["completeness"].append(exp.completeness_error.float())
                heatmaps.append(self._stored(exp.heatmap))
        return _BatchResult(
            targets=targets.cpu().numpy(),
            probabilities=probabilities.gather(1, targets.view(-1, 1))[:, 0].cpu().numpy(),
            scores=torch.stack(columns["scores"], dim=1).cpu().numpy(),
            baseline_scores=torch.stack(columns["baseline"], dim=1).cpu().numpy(),
            completeness=torch.stack(columns["completeness"], dim=1).cpu().numpy(),
            heatmaps=heatmaps,
        )

    def _stored(self, heatmap: Tensor) -> np.ndarray:
        if self.heatmap_dtype == "uint8":
            return torch.round(heatmap * 255.0).clamp_(0, 255).to(torch.uint8).cpu().numpy()
        return heatmap.to(torch.float16).cpu().numpy()


# --------------------------------------------------------------------------------------
# Progress (rank 0)
# --------------------------------------------------------------------------------------


class _RateColumn(ProgressColumn):
    """``12.3 images/s``."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f} images/s" if speed else "- images/s")


class _Progress:
    """Rank 0's view of the whole run: shards finished on disk, plus its own open shard.

    On a terminal it draws a bar (images, images/s, elapsed, ETA) on stderr; otherwise it
    prints a line per shard that rank 0 finishes.
    """

    def __init__(
        self, out: Path, sizes: dict[str, int], bar: bool, echo: Callable[[str], None] | None
    ) -> None:
        self.folder = out / SHARD_DIR
        self.sizes = sizes
        self.echo = echo
        self.done = self._scan()
        self.partial = 0
        self.total = sum(sizes.values())
        self.at_start = self.completed
        self.start = self._last_scan = time.perf_counter()
        self.bar = Progress(
            TextColumn("explaining"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("images"),
            _RateColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=not bar,
            transient=True,
        )
        self.task = self.bar.add_task("", total=self.total, completed=self.at_start)

    def _scan(self) -> set[str]:
        with os.scandir(self.folder) as found:
            return {
                e.name[:-4] for e in found if e.name.endswith(".npz") and e.name[:-4] in self.sizes
            }

    @property
    def completed(self) -> int:
        """Images finished: in finished shards, and in rank 0's open shard."""
        return sum(self.sizes[name] for name in self.done) + self.partial

    @property
    def processed(self) -> int:
        """Images finished during this run."""
        return self.completed - self.at_start

    def update(self, partial: int, finished: str | None = None) -> None:
        """Rank 0 has ``partial`` images of its open shard done, or just wrote ``finished``."""
        now = time.perf_counter()
        self.partial = partial
        if finished is not None or now - self._last_scan > 2.0:
            self.done = self._scan()
            self._last_scan = now
        if finished is not None:
            self.done.add(finished)
        self.bar.update(self.task, completed=self.completed)
        if finished is not None and self.bar.disable and self.echo is not None:
            rate = self.processed / max(now - self.start, 1e-9)
            left = (self.total - self.completed) / rate if rate > 0 else float("nan")
            eta = f"{left:.0f} s" if math.isfinite(left) else "-"
            self.echo(
                f"{finished}: {self.completed}/{self.total} images, "
                f"{rate:.2f} images/s, ETA {eta}"
            )

    def __enter__(self) -> _Progress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSummary:
    """What a dataset run did (the totals are known on rank 0 only).

    Attributes:
        out: The output folder.
        images: Images in the source.
        explained: Images explained (rank 0; ``None`` on other ranks).
        failed: Images that could not be explained (rank 0; ``None`` on other ranks).
        shards: Shards in the run.
        skipped: Shards that were already finished when this run started.
        processed: Images explained or failed during this run: by all ranks on rank 0, by
            this rank on the others.
        seconds: Wall time of the explaining (after the setup, up to the final barrier).
        rank: This process's rank.
        world_size: Number of processes.
    """

    out: Path
    images: int
    explained: int | None
    failed: int | None
    shards: int
    skipped: int
    processed: int
    seconds: float
    rank: int
    world_size: int

    @property
    def images_per_second(self) -> float:
        """Images per second during this run."""
        return self.processed / self.seconds if self.seconds > 0 else float("nan")


def explain_dataset(
    options: DatasetOptions,
    *,
    progress: bool = False,
    echo: Callable[[str], None] | None = None,
) -> DatasetSummary:
    """Explain every image of a folder or list, into resumable shards.

    Runs as one process, or as one rank of a ``torchrun`` job (see the module docstring).

    Args:
        options: The arguments.
        progress: Draw a progress bar on stderr (rank 0 only).
        echo: Where rank 0 prints a line per finished shard when there is no bar.

    Returns:
        A :class:`DatasetSummary`.

    Raises:
        InputError: An argument that cannot work, or an output folder that holds a run
            with other parameters (on rank 0).
        RankZeroError: On other ranks, when rank 0 refused the run.

    Example:
        >>> options = DatasetOptions(Path("photos"), Path("out"), layers=("head",))
        >>> explain_dataset(options).explained  # doctest: +SKIP
        1000
    """
    options.check()
    ranks = Ranks.from_env()
    threads_before = torch.get_num_threads()
    torch.set_num_threads(options.threads or max(1, _cpu_count() // ranks.local_world_size))
    try:
        device = _rank_device(options.device, ranks)
        with _process_group(ranks, device):
            return _run(options, ranks, device, progress, echo)
    finally:
        torch.set_num_threads(threads_before)


@contextlib.contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold ``out/.lock`` for a run, or refuse when another process holds it.

    Raises:
        InputError: Another run is writing into ``out``; the message names its process.

    Example:
        >>> with run_lock(Path("out")):  # doctest: +SKIP
        ...     pass
    """
    try:
        import fcntl
    except ImportError:  # no flock here (Windows): no lock
        yield
        return
    path = out / LOCK
    handle = path.open("a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = " ".join(handle.read().split()) or "another process"
            raise InputError(
                f"another explain-dataset run is writing into --out '{out}' ({holder}); wait "
                "for it to finish, or choose another --out"
            ) from None
        except OSError:  # a file system without flock: no lock
            yield
            return
        handle.seek(0)
        handle.truncate()
        handle.write(
            f"pid {os.getpid()} on {socket.gethostname()} by {_user()}, since "
            f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}\n"
        )
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment
        return "unknown user"


def _run(
    options: DatasetOptions,
    ranks: Ranks,
    device: torch.device,
    progress: bool,
    echo: Callable[[str], None] | None,
) -> DatasetSummary:
    """The run; rank 0 holds the folder's lock (in ``held``) until it returns."""
    with contextlib.ExitStack() as held:
        loaded = load_model(options.model, device)
        layers = check_layers(list(options.layers), probe_layers(loaded.model))
        out = Path(options.out)
        failure: BaseException | None = None
        setup: tuple[int, str] | list[int] = []
        entries: list[ImageEntry] = []
        params: dict[str, Any] = {}
        if ranks.rank == 0:
            try:
                out = prepare_output_dir(options.out)
                held.enter_context(run_lock(out))
                entries, params, todo = _prepare_run(options, loaded, layers, out)
                setup = todo
            except Exception as exc:
                failure = exc
                setup = (2 if isinstance(exc, InputError) else 1, str(exc))
        setup = _from_rank_zero(setup, ranks)
        if isinstance(setup, tuple):
            if failure is not None:
                raise failure
            raise RankZeroError(setup[0])
        todo = setup
        if ranks.rank != 0:
            entries, params = _read_run(out)
        size = int(params["shard_size"])
        names = shard_names(math.ceil(len(entries) / size))
        sizes = {name: min(size, len(entries) - k * size) for k, name in enumerate(names)}
        mine = [todo[i] for i in rank_shards(len(todo), ranks.rank, ranks.world_size)]
        view = _Progress(out, sizes, progress, echo) if ranks.rank == 0 else None
        start = time.perf_counter()
        with view if view is not None else contextlib.nullcontext():
            processed = _explain_shards(
                options, loaded, params, entries, names, sizes, mine, view
            )
        _barrier(ranks, device)
        seconds = time.perf_counter() - start
        explained = failed = None
        if ranks.rank == 0:
            explained, failed = merge_shards(out, names, [e.id for e in entries])
        return DatasetSummary(
            out=out,
            images=len(entries),
            explained=explained,
            failed=failed,
            shards=len(names),
            skipped=len(names) - len(todo),
            processed=sum(sizes[names[k]] for k in todo) if ranks.rank == 0 else processed,
            seconds=seconds,
            rank=ranks.rank,
            world_size=ranks.world_size,
        )


def _explain_shards(
    options: DatasetOptions,
    loaded: LoadedModel,
    params: dict[str, Any],
    entries: Sequence[ImageEntry],
    names: Sequence[str],
    sizes: dict[str, int],
    mine: Sequence[int],
    view: _Progress | None,
) -> int:
    """Explain this rank's shards (``sizes``: images per shard); return the images done."""
    size = int(params["shard_size"])
    batch_size = int(params["batch_size"])
    batches: list[list[int]] = []
    for k in mine:
        images = range(k * size, min((k + 1) * size, len(entries)))
        batches.extend(list(images[i : i + batch_size]) for i in range(0, len(images), batch_size))
    if not batches:
        return 0
    heatmap_dtype: HeatmapDtype = params["heatmap_dtype"]
    explainer = _BatchExplainer(loaded, params, heatmap_dtype)
    pairs = [(m, layer) for m, layer in params["explanations"]]
    loader = DataLoader(
        ImageFiles([e.path for e in entries]),
        batch_sampler=batches,
        num_workers=options.workers,
        collate_fn=collate_images,
    )
    out = Path(options.out)
    buffer: ShardBuffer | None = None
    done = 0
    for batch in loader:
        k = batch.indices[0] // size
        if buffer is None:
            buffer = ShardBuffer(out, names[k], pairs, loaded.class_names)
        for index, reason in batch.failures:
            buffer.add_error(index, entries[index].id, entries[index].path, reason)
        if batch.images is not None:
            _explain_into(buffer, explainer, batch.images, batch.ok, entries)
        done += len(batch.indices)
        if len(buffer) == sizes[names[k]]:
            buffer.write((INPUT_SIZE, INPUT_SIZE), np.dtype(heatmap_dtype))
            if view is not None:
                view.update(0, finished=names[k])
            buffer = None
        elif view is not None:
            view.update(len(buffer))
    return done


def _explain_into(
    buffer: ShardBuffer,
    explainer: _BatchExplainer,
    images: Tensor,
    indices: Sequence[int],
    entries: Sequence[ImageEntry],
) -> None:
    """Explain a batch into the shard; if it fails, explain its images one at a time."""
    try:
        found = explainer(images, [entries[i].target for i in indices])
    except ValueError as exc:
        if len(indices) == 1:
            entry = entries[indices[0]]
            buffer.add_error(indices[0], entry.id, entry.path, f"explanation failed: {exc}")
            return
        for row, index in enumerate(indices):
            _explain_into(buffer, explainer, images[row : row + 1], [index], entries)
        return
    buffer.add(
        indices,
        [entries[i].id for i in indices],
        found.targets,
        found.probabilities,
        found.scores,
        found.baseline_scores,
        found.completeness,
        found.heatmaps,
    )
