"""Which chunk of path points runs fastest on a CPU, in a plain Python process.

``batch_size=None`` on a CPU caps a chunk so that its largest activation stays near
``rsigradcam.core.memory.CPU_CHUNK_ACTIVATION_BYTES``. This script measures where that cap
should lie: one RSI-Grad-CAM call on the embedded EfficientNet-Lite0 (``chelsea``,
``head``, m = 50, the default ``speed="auto"`` copy) at fixed batch sizes, interleaved run
by run, median of the repeats, in the process as Python starts it (the C allocator as
glibc sets it up; nothing in the package changes it). It also times ``batch_size=None``
and says which chunk that chose.

Run from the repository root, on a quiet machine (about 2 minutes on 2 CPU cores)::

    python benchmarks/chunk_size.py    # writes benchmarks/chunk_size.md and .json
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from rsigradcam import RSIGradCAM
from rsigradcam.core.memory import CPU_CHUNK_ACTIVATION_BYTES
from rsigradcam.files import save_json, save_text
from rsigradcam.io import load_image
from rsigradcam.models import efficientnet_lite0

SIZES = (2, 3, 4, 6, 8, 12, 17)
REPEATS = 7
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    """Time each chunk size; write ``benchmarks/chunk_size.md`` and ``.json``."""
    from skimage import data

    model = efficientnet_lite0().eval()
    image = load_image(data.chelsea())[0]  # type: ignore[no-untyped-call]
    cams: dict[str, RSIGradCAM] = {
        str(size): RSIGradCAM(model, "head", steps=50, batch_size=size) for size in SIZES
    }
    cams["None"] = RSIGradCAM(model, "head", steps=50)
    for cam in cams.values():
        cam(image)  # warm-up: the copy, the probe
    times: dict[str, list[float]] = {key: [] for key in cams}
    for _ in range(REPEATS):
        for key, cam in cams.items():
            start = time.perf_counter()
            cam(image)
            times[key].append(time.perf_counter() - start)
    medians = {key: statistics.median(values) for key, values in times.items()}
    head_mb = 1280 * 7 * 7 * 4 / 2**20
    largest_mb = 96 * 112 * 112 * 4 / 2**20  # blocks.1's expansion: the largest activation
    chosen = int(CPU_CHUNK_ACTIVATION_BYTES // (largest_mb * 2**20))
    lines = [
        "# CPU chunk size in a plain process",
        "",
        f"EfficientNet-Lite0, `chelsea`, `head`, m = 50, median of {REPEATS} interleaved runs; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads. Command: "
        "`python benchmarks/chunk_size.py`.",
        "",
        "| batch_size | largest activation per chunk (MB) | s |",
        "|---:|---:|---:|",
    ]
    for key in cams:
        size = chosen if key == "None" else int(key)
        label = f"None (chose {chosen})" if key == "None" else key
        lines.append(f"| {label} | {size * largest_mb:.0f} | {medians[key]:.3f} |")
    lines += ["", f"(One point's `head` activation is {head_mb:.2f} MB.)"]
    text = "\n".join(lines) + "\n"
    save_json({"times": times, "medians": medians, "chosen": chosen},
              ROOT / "benchmarks" / "chunk_size.json")
    save_text(text, ROOT / "benchmarks" / "chunk_size.md")
    print(text)


if __name__ == "__main__":
    main()
