"""The command line's own process keeps the memory it frees (glibc), and nothing else does."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import rsigradcam.app.allocator as allocator
import rsigradcam.app.cli as cli

# 20 steps that allocate and free three 19 MB arrays, as a chunk of a path pass does its
# activations: without the setting, freed memory goes back to the system and every step
# faults fresh pages in (about 37 000 faults here); with it, none.
_FAULTS = """
import resource, sys
import numpy as np
from rsigradcam.app.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
def step():
    a = np.ones(2_500_000)
    b = a * 2
    return (b + a).sum()
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True,
        timeout=120, env={k: v for k, v in os.environ.items() if k not in allocator.USER_SETTINGS},
    )
    kept, faults = done.stdout.split()
    return kept, int(faults)


@pytest.mark.skipif(allocator.libc() is None, reason="glibc only")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    kept, plain = _faults("plain")
    assert kept == "None" and plain > 5000
    kept, faults = _faults("keep")
    assert kept == "True" and faults < plain / 10


@pytest.mark.parametrize("name", allocator.USER_SETTINGS)
def test_the_users_own_allocator_settings_are_left_alone(monkeypatch, name):
    monkeypatch.setenv(name, "1")
    monkeypatch.setattr(allocator, "libc", lambda: pytest.fail("libc was loaded"))
    assert allocator.keep_freed_memory() is False


@pytest.mark.parametrize(("argv", "kept"), [(["explain", "x.jpg"], True), (["bench"], False),
                                            (["--help"], True)])
def test_every_command_but_bench_keeps_freed_memory(monkeypatch, argv, kept):
    calls: list[str] = []
    monkeypatch.setattr(sys, "argv", ["rsigradcam", *argv])
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append("kept") or True)
    monkeypatch.setattr(cli, "app", lambda: calls.append("app"))
    cli.main()
    assert calls == (["kept", "app"] if kept else ["app"])
