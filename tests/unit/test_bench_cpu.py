"""The benchmark's CPU readings (bench/cpu.py) against real processes burning known CPU."""

from __future__ import annotations

import subprocess
import sys

from bench import cpu

BURN = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass\n"
SAY_DONE = "print('done', flush=True)\n"


def _python(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)


def _wait_done(process: subprocess.Popen[bytes]) -> None:
    """However busy the machine, until the process says its burn is over."""
    assert process.stdout is not None
    assert process.stdout.readline() == b"done\n"


def test_a_process_that_burns_cpu_is_read_with_what_it_burned() -> None:
    process = _python(BURN.format(seconds=0.4) + SAY_DONE + "time.sleep(30)\n")
    try:
        before = cpu.reading({"burner": process.pid})
        _wait_done(process)
        after = cpu.reading({"burner": process.pid})
        usage = cpu.Usage.between(before, after, 1000)
        assert 0.2 <= usage.seconds["burner"] <= 1.0
        assert usage.per_thousand("burner") == usage.seconds["burner"]
    finally:
        process.kill()
        process.wait()


def test_a_child_that_exited_still_counts_in_its_parent() -> None:
    """A PostgreSQL backend that exits between two readings: its seconds stay in the tree."""
    child = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {BURN.format(seconds=0.4)!r}])"
    parent = _python(f"{child}\n{SAY_DONE}import time; time.sleep(30)\n")
    try:
        before = cpu.reading({"tree": parent.pid})
        _wait_done(parent)  # the child burned 0.4 s and was reaped by its parent
        after = cpu.reading({"tree": parent.pid})
        assert cpu.Usage.between(before, after, 1).seconds["tree"] >= 0.3
    finally:
        parent.kill()
        parent.wait()


def test_a_process_that_is_gone_reads_zero_and_never_a_negative_use() -> None:
    process = _python("pass")
    process.wait()
    assert cpu.read_stat(process.pid) is None
    assert cpu.tree_seconds(process.pid) == 0.0
    assert cpu.Usage.between({"gone": 5.0}, {"gone": 0.0}, 10).seconds["gone"] == 0.0
