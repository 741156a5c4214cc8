"""What a benchmark's ``main`` does around its measurements (``bench.run``, ``bench.million``):
a scratch directory for the clusters and processes it starts, SIGTERM taken as Ctrl-C, and,
however it ends, everything it started stopped and the directory removed before its report is
printed."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from chaos.processes import ignore_termination, stop_on_termination


class Stoppable(Protocol):
    def stop(self) -> None: ...


S = TypeVar("S", bound=Stoppable)


@dataclass(frozen=True)
class Outcome:
    """How a benchmark ended: its exit code, and the report to print once all is stopped."""

    code: int
    report: str | None = None


def run_in_scratch(prefix: str, start: Callable[[Path], S], measure: Callable[[S], Outcome]) -> int:
    """``measure(start(root))`` in a fresh temporary ``root``: the exit code (130 on Ctrl-C or
    SIGTERM), the report printed after ``stop()`` and the removal of ``root``."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    runner = start(root)
    stop_on_termination()
    try:
        outcome = measure(runner)
    except KeyboardInterrupt:
        print("interrupted; stopping what the benchmark started", file=sys.stderr)
        return 130
    finally:
        ignore_termination()
        runner.stop()
        shutil.rmtree(root, ignore_errors=True)
    if outcome.report is not None:
        print(outcome.report)
    return outcome.code
