"""A dataset run's parameters: the user's options, ``run.json``, and the resume check.

:class:`DatasetOptions` holds every argument of ``rsigradcam explain-dataset``.
:class:`RunParameters` holds everything that affects the results; it is written to
``run.json`` when a run starts, and a run into a folder that already holds one resumes it
only when its parameters are the same (:func:`prepare_run`), else it is refused, naming
the parameters that differ.

Example:
    >>> explanation_pairs(["rsi", "ig"], ["blocks.10", "head"])
    [('rsi', 'blocks.10'), ('rsi', 'head'), ('ig', 'input')]
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, get_args

import torch

from rsigradcam.app.errors import InputError
from rsigradcam.app.images import ImageEntry, list_images
from rsigradcam.app.loading.hashing import model_sha256
from rsigradcam.app.loading.methods import parse_methods
from rsigradcam.app.loading.models import LoadedModel
from rsigradcam.app.runs.parameters import FIXED_BUDGET_MB, differences
from rsigradcam.app.runs.shards import remove_stale, shard_done, shard_names, write_lines
from rsigradcam.app.settings import Channels, InputFormat, Variants, speed_options
from rsigradcam.constants import IMAGENET_MEAN, IMAGENET_STD
from rsigradcam.core.inference import SpeedOptions
from rsigradcam.core.targets import Output
from rsigradcam.files import save_json
from rsigradcam.heatmaps import IMAGES, RUN, SHARD_DIR, read_lines
from rsigradcam.methods import method_layers
from rsigradcam.serialization import FormatError, decode, encode, json_options

__all__ = [
    "DatasetOptions",
    "HeatmapDtype",
    "RunParameters",
    "explanation_pairs",
    "prepare_run",
    "read_run",
]

HeatmapDtype = Literal["uint8", "float16"]


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
        methods: Some of the names of :data:`rsigradcam.methods.registry.METHODS`.
        steps: RSI-Grad-CAM steps m.
        output: The explained score, ``"softmax"`` or ``"logits"``, for every method.
        batch_size: Images explained together.
        shard_size: Images per shard.
        heatmap_dtype: ``"uint8"`` (round(255 h)) or ``"float16"``.
        device: ``"cpu"`` or ``"cuda"`` (under torchrun, ``cuda`` is ``cuda:LOCAL_RANK``).
        workers: DataLoader worker processes decoding images (0: in the main process).
        threads: Torch threads per process; ``None``: ``OMP_NUM_THREADS`` when it is set,
            else the CPU cores divided by the processes on this machine.
        variants: The authors' variants of the methods that take them (``rsi``).
        input_format: The model input's size and normalisation.
        compile: ``torch.compile`` the methods' private copy of the model.
        fold_batchnorm: Fold BatchNorms into their convolutions in that copy; ``None``: on
            (the default of :class:`~rsigradcam.core.inference.SpeedOptions`). Neither is
            compared on a resume: they move the maps by float rounding only.
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
    variants: Variants = field(default_factory=Variants)
    input_format: InputFormat = field(default_factory=InputFormat)
    compile: bool = False
    fold_batchnorm: bool | None = None

    @property
    def speed(self) -> SpeedOptions:
        """How the methods run the model (``create_cam``'s ``speed``)."""
        return speed_options(self.compile, self.fold_batchnorm)

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
        self.variants.check(parse_methods(self.methods))


def explanation_pairs(methods: Sequence[str], layers: Sequence[str]) -> list[tuple[str, str]]:
    """The (method, layer) pairs a run computes, in the order they are stored.

    Example:
        >>> explanation_pairs(["rsi", "ig"], ["blocks.10", "head"])
        [('rsi', 'blocks.10'), ('rsi', 'head'), ('ig', 'input')]
    """
    return [(m, layer) for m in methods for layer in method_layers(m, layers)]


def _square(size: Any) -> Any:
    """An older ``run.json``'s ``input_size``: one number for a square."""
    return [size, size] if isinstance(size, int) else size


@dataclass(frozen=True)
class RunParameters:
    """Everything that affects a run's results: ``run.json``'s ``"parameters"``.

    Their JSON form is :func:`rsigradcam.serialization.encode`'s, the fields in order;
    :func:`read_run` also reads older files (no variants or normalisation recorded, a
    square ``input_size`` as one number).

    Attributes:
        source: The source, resolved.
        images: Number of images.
        images_sha256: SHA-256 of the ``images.jsonl`` lines (ids, paths, targets).
        model: The ``--model`` argument.
        model_sha256: SHA-256 of the model's parameters and buffers.
        num_classes: The model's number of classes.
        layers: The explained layers.
        methods: The methods, in order.
        explanations: The (method, layer) pairs, in the order they are stored.
        steps: Path steps m of the path methods.
        output: The explained score.
        baseline: The baseline of the path methods.
        rule: The quadrature rule.
        grad_relu: The authors' PyTorch variant of ``rsi``.
        guided: The authors' Keras variant of ``rsi``.
        input_size: Height and width of the model input.
        mean: The normalisation's per-channel mean; ``None``: not normalised.
        std: The normalisation's per-channel standard deviation.
        heatmap_size: Height and width of the stored heatmaps.
        heatmap_dtype: How the heatmaps are stored.
        batch_size: Images explained together.
        shard_size: Images per shard.
        device: The device type.
        memory_budget_mb: Memory budget of a path chunk (MB).
        version: The package version.
    """

    source: str
    images: int
    images_sha256: str
    model: str
    model_sha256: str
    num_classes: int
    layers: tuple[str, ...]
    methods: tuple[str, ...]
    explanations: tuple[tuple[str, str], ...]
    steps: int
    output: Output
    baseline: str
    rule: str
    grad_relu: bool = field(metadata=json_options(missing=False))
    guided: bool = field(metadata=json_options(missing=False))
    input_size: tuple[int, int] = field(metadata=json_options(upgrade=_square))
    mean: Channels | None = field(metadata=json_options(missing=IMAGENET_MEAN))
    std: Channels | None = field(metadata=json_options(missing=IMAGENET_STD))
    heatmap_size: tuple[int, int]
    heatmap_dtype: HeatmapDtype
    batch_size: int
    shard_size: int
    device: str
    memory_budget_mb: float
    version: str

    @property
    def shards(self) -> int:
        """Number of shards."""
        return math.ceil(self.images / self.shard_size)

    @property
    def variants(self) -> Variants:
        """``grad_relu`` and ``guided``, for the methods that take them."""
        return Variants(self.grad_relu, self.guided)

    @property
    def input_format(self) -> InputFormat:
        """The input size and normalisation."""
        return InputFormat(self.input_size, self.mean, self.std)


def _budget_mb(device: torch.device) -> float:
    """Memory budget of a path chunk: a quarter of a GPU's memory, else the fixed one."""
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        return float(total // 4 // 2**20)
    return FIXED_BUDGET_MB


def _entry_line(entry: ImageEntry) -> dict[str, Any]:
    return {"id": entry.id, "path": entry.path, "target": entry.target}


def _entries_sha256(entries: Sequence[ImageEntry]) -> str:
    digest = hashlib.sha256()
    for entry in entries:
        digest.update((json.dumps(_entry_line(entry)) + "\n").encode())
    return digest.hexdigest()


def _parameters(
    options: DatasetOptions,
    loaded: LoadedModel,
    layers: Sequence[str],
    entries: Sequence[ImageEntry],
) -> RunParameters:
    """Everything that affects the results (compared when a run is resumed)."""
    from rsigradcam import __version__

    methods = parse_methods(options.methods)
    return RunParameters(
        source=str(options.source.resolve()),
        images=len(entries),
        images_sha256=_entries_sha256(entries),
        model=options.model,
        model_sha256=model_sha256(loaded.model),
        num_classes=loaded.num_classes,
        layers=tuple(layers),
        methods=methods,
        explanations=tuple(explanation_pairs(methods, layers)),
        steps=options.steps,
        output=options.output,
        baseline="black",
        rule="trapezoid",
        grad_relu=options.variants.grad_relu,
        guided=options.variants.guided,
        input_size=options.input_format.size,
        mean=options.input_format.mean,
        std=options.input_format.std,
        heatmap_size=options.input_format.size,
        heatmap_dtype=options.heatmap_dtype,
        batch_size=options.batch_size,
        shard_size=options.shard_size,
        device=loaded.device.type,
        memory_budget_mb=_budget_mb(loaded.device),
        version=__version__,
    )


def prepare_run(
    options: DatasetOptions, loaded: LoadedModel, layers: Sequence[str], out: Path
) -> tuple[list[ImageEntry], RunParameters, list[int]]:
    """On rank 0: check the prepared output folder ``out``; return the images, params, todo.

    A new run writes ``images.jsonl`` and ``run.json``; a run into a folder that holds one
    with the same parameters resumes it. ``todo`` lists the shards not finished yet.

    Raises:
        InputError: ``out`` holds a run with other parameters, or shards without a run.
    """
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
        changed = differences(stored, encode(params))
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
                "parameters": encode(params),
                "shards": params.shards,
                "warnings": params.variants.warnings(params.methods),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "torch": torch.__version__,
            },
            run_path,
        )
    shards.mkdir(exist_ok=True)
    remove_stale(out)
    names = shard_names(params.shards)
    todo = [k for k, name in enumerate(names) if not shard_done(out, name)]
    return entries, params, todo


def read_run(out: Path) -> tuple[list[ImageEntry], RunParameters]:
    """The images and parameters of the run that rank 0 prepared in ``out``."""
    params = json.loads((out / RUN).read_text(encoding="utf-8"))["parameters"]
    entries = [ImageEntry(e["id"], e["path"], e["target"]) for e in read_lines(out / IMAGES)]
    try:
        return entries, decode(RunParameters, params, source=out / RUN)
    except FormatError as error:
        raise InputError(str(error)) from None
