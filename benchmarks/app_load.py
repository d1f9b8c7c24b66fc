"""The explorer under load: concurrent API calls, oversized uploads, the server's peak memory.

Starts ``python -m rsigradcam.app`` on a free port of 127.0.0.1 with the given
``--max-queue`` and ``--concurrency``, then:

* sends ``--calls`` calls to ``/explain`` through ``gradio_client`` at the same moment, one
  client each, and counts those answered, those refused with gradio_client's one line
  ("Queue is full! Please try again.") and any other failure;
* uploads a real 100-megapixel PNG (10000 x 10000, written row by row, a few hundred kB)
  and a file over the byte limit, and records the one-line answers;
* checks that the server still answers a call afterwards, and reads its peak resident
  memory (``VmHWM`` in ``/proc/PID/status``, Linux) before and after.

Run from the repository root (the app extra installed)::

    python benchmarks/app_load.py          # writes benchmarks/app_load.md and app_load.json
    python benchmarks/app_load.py --calls 20 --max-queue 8 --concurrency 1 2 --steps 16

Times depend on the machine and on what else runs on it; the counts depend only on how
long one call takes compared with the others' arrival (all arrive within a second).
"""

# No `from __future__ import annotations`: tests load this file as a module that is not
# in sys.modules, where dataclasses cannot resolve string annotations.
import argparse
import json
import os
import platform
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
#: gradio_client's message when the server's queue is full.
BUSY = "Queue is full! Please try again."
START_TIMEOUT = 300  # seconds for the server to load the model and answer
CALL_TIMEOUT = 600  # seconds for one call


@dataclass
class LoadReport:
    """What one run measured (see the module's docstring)."""

    model: str
    calls: int
    max_queue: int
    concurrency: int
    layer: str
    method: str
    steps: int
    answered: int = 0
    distinct_answers: int = 0
    refused: int = 0
    failed: list[str] = field(default_factory=list)
    burst_seconds: float = 0.0
    slowest_answer_seconds: float = 0.0
    big_png: str = ""
    big_png_seconds: float = 0.0
    big_file: str = ""
    up_after: bool = False
    rss_start_mb: float = 0.0
    peak_one_call_mb: float = 0.0
    peak_rss_mb: float = 0.0
    machine: str = field(default_factory=lambda: f"{platform.machine()}, {os.cpu_count()} CPUs")


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def memory_mb(pid: int, key: str = "VmHWM") -> float:
    """``VmHWM`` (peak resident memory) or ``VmRSS`` of a process, in MiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} in /proc/{pid}/status")


@contextmanager
def running_app(
    model: str, *, max_queue: int, concurrency: int, log: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start the explorer on a free port; yield its URL and process; stop it (SIGTERM)."""
    port = free_port()
    command = [
        sys.executable, "-m", "rsigradcam.app", "--model", model, "--port", str(port),
        "--max-queue", str(max_queue), "--concurrency", str(concurrency),
    ]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not answers(url):
            if process.poll() is not None:
                raise RuntimeError(f"the app exited with {process.returncode}: {log.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the app did not answer at {url}: {log.read_text()}")
            time.sleep(0.5)
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)


def answers(url: str) -> bool:
    """Whether the page answers 200 now."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def one_line(exc: BaseException) -> str:
    """An exception as one line: its message, or its type when it has none."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def call(url: str, image: Path, layer: str, method: str, steps: int) -> dict[str, object]:
    """One ``/explain`` call from a new client; returns the summary, raises on refusal."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    _, summary = client.predict(
        handle_file(str(image)), layer, method, steps, api_name="/explain"
    )
    return dict(summary)


def burst(
    url: str, image: Path, calls: int, layer: str, method: str, steps: int
) -> tuple[list[float], list[str], set[tuple[object, ...]]]:
    """``calls`` calls released at the same moment.

    Returns:
        The seconds of each answer, the lines of the others, and the distinct answers
        (class, evaluations, completeness error to 5 digits): one when calls that ran at
        the same time did not disturb each other.
    """
    start = threading.Barrier(calls)
    answered: list[float] = []
    refused: list[str] = []
    answers: set[tuple[object, ...]] = set()
    lock = threading.Lock()

    def one() -> None:
        start.wait()
        began = time.perf_counter()
        try:
            summary = call(url, image, layer, method, steps)
        except Exception as exc:  # every refusal is counted by its line
            with lock:
                refused.append(one_line(exc))
            return
        error = summary["completeness_error"]
        answer = (summary["class_id"], summary["evaluations"], error and round(float(error), 5))
        with lock:
            answered.append(time.perf_counter() - began)
            answers.add(answer)

    threads = [threading.Thread(target=one) for _ in range(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=CALL_TIMEOUT)
    return answered, refused, answers


def write_png(path: Path, width: int, height: int) -> Path:
    """A real RGB PNG of width x height (a grey gradient), written one row at a time."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    compressor = zlib.compressobj(9)
    with path.open("wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n")
        out.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        parts: list[bytes] = []
        for y in range(height):
            row = b"\x00" + bytes([y * 255 // max(height - 1, 1)]) * (3 * width)
            parts.append(compressor.compress(row))
        parts.append(compressor.flush())
        out.write(chunk(b"IDAT", b"".join(parts)))
        out.write(chunk(b"IEND", b""))
    return path


def sample_photo(folder: Path) -> Path:
    """The scikit-image cat, as a PNG."""
    from PIL import Image
    from skimage import data

    path = folder / "chelsea.png"
    Image.fromarray(data.chelsea()).save(path)
    return path


def run_load(
    model: str = "efficientnet_lite0",
    *,
    folder: Path,
    calls: int = 20,
    max_queue: int = 8,
    concurrency: int = 1,
    layer: str = "head",
    method: str = "rsi",
    steps: int = 16,
    big_bytes: int = 60 * 1024 * 1024,
    env: dict[str, str] | None = None,
) -> LoadReport:
    """Start the app, send the burst and the oversized uploads, measure; see the docstring."""
    folder.mkdir(parents=True, exist_ok=True)
    report = LoadReport(model, calls, max_queue, concurrency, layer, method, steps)
    photo = sample_photo(folder)
    big = write_png(folder / "big.png", 10_000, 10_000)
    heavy = folder / "heavy.png"
    with heavy.open("wb") as out:  # over the byte limit; never read as an image
        out.write(b"\x89PNG\r\n\x1a\n" + os.urandom(big_bytes))
    with running_app(
        model, max_queue=max_queue, concurrency=concurrency, log=folder / "server.log", env=env
    ) as (url, process):
        call(url, photo, layer, method, steps)  # warm: the first call pays for imports
        report.rss_start_mb = memory_mb(process.pid, "VmRSS")
        report.peak_one_call_mb = memory_mb(process.pid)
        began = time.perf_counter()
        answered, refused, answers = burst(url, photo, calls, layer, method, steps)
        report.distinct_answers = len(answers)
        report.burst_seconds = time.perf_counter() - began
        report.answered = len(answered)
        report.slowest_answer_seconds = max(answered, default=0.0)
        report.refused = sum(1 for line in refused if line == BUSY)
        report.failed = [line for line in refused if line != BUSY]
        for path, attribute in ((big, "big_png"), (heavy, "big_file")):
            began = time.perf_counter()
            try:
                call(url, path, layer, method, steps)
                setattr(report, attribute, "answered (not refused)")
            except Exception as exc:  # the refusal is what is measured
                setattr(report, attribute, one_line(exc))
            if attribute == "big_png":
                report.big_png_seconds = time.perf_counter() - began
        try:
            call(url, photo, layer, method, steps)
            report.up_after = process.poll() is None
        except Exception:  # recorded as the server not answering
            report.up_after = False
        report.peak_rss_mb = memory_mb(process.pid)
    return report


def _rows(report: LoadReport) -> list[tuple[str, str]]:
    failed = "; ".join(sorted(set(report.failed))) or "none"
    return [
        ("server options", f"`--max-queue {report.max_queue} --concurrency {report.concurrency}`"),
        ("concurrent calls", str(report.calls)),
        ("answered (distinct answers: 1 when runs did not disturb each other)",
         f"{report.answered} ({report.distinct_answers})"),
        ("refused with \"Queue is full! Please try again.\"", str(report.refused)),
        ("other failures", f"{len(report.failed)} ({failed})"),
        ("burst, first call to last answer", f"{report.burst_seconds:.1f} s "
         f"(slowest answer {report.slowest_answer_seconds:.1f} s)"),
        ("100-megapixel PNG", f"{report.big_png} ({report.big_png_seconds:.2f} s)"),
        ("file over the byte limit", report.big_file),
        ("server answers afterwards", "yes" if report.up_after else "no"),
        ("server memory after the first call (RSS)", f"{report.rss_start_mb:.0f} MiB"),
        ("server peak memory up to the end of the first call (VmHWM)",
         f"{report.peak_one_call_mb:.0f} MiB"),
        ("server peak memory (VmHWM, whole run)", f"{report.peak_rss_mb:.0f} MiB"),
    ]


def markdown(*reports: LoadReport, note: str = "") -> str:
    """The reports as the Markdown table of ``app_load.md``, one column per run."""
    first = reports[0]
    tables = [_rows(report) for report in reports]
    header = "| | " + " | ".join(f"run {i + 1}" for i in range(len(reports))) + " |"
    lines = [
        "# The explorer under load",
        "",
        f"Written by `python benchmarks/app_load.py` (see its docstring): `{first.model}`, "
        f"`/explain` {first.method} at `{first.layer}`, {first.steps} steps; {first.machine}."
        + (f" {note}" if note else ""),
        "",
        header,
        "|---|" + "---|" * len(reports),
    ]
    for i, (name, _) in enumerate(tables[0]):
        cells = " | ".join(table[i][1].replace("|", "/") for table in tables)
        lines.append(f"| {name} | {cells} |")
    return "\n".join([*lines, ""])


def main(argv: list[str] | None = None) -> int:
    """Run the measurement once per ``--concurrency``; write ``app_load.md`` and ``.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--max-queue", type=int, default=8)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1])
    parser.add_argument("--layer", default="head")
    parser.add_argument("--method", default="rsi")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--work", type=Path, default=Path("/tmp/rsigradcam-app-load"))
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--note", default="", help="A sentence for the report (the machine).")
    args = parser.parse_args(argv)
    reports = [
        run_load(
            args.model, folder=args.work, calls=args.calls, max_queue=args.max_queue,
            concurrency=concurrency, layer=args.layer, method=args.method, steps=args.steps,
        )
        for concurrency in args.concurrency
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    data = [asdict(report) for report in reports]
    (args.out / "app_load.json").write_text(json.dumps(data, indent=2) + "\n")
    text = markdown(*reports, note=args.note)
    (args.out / "app_load.md").write_text(text)
    print(text)
    return 0 if all(r.up_after and not r.failed for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
