"""The million bench's own parts that need no cluster: its options, its plot, its CSV."""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bench import million
from bench.plot import Panel, chart, nice_ceiling


def test_its_options_scale_it_down_and_bad_ones_are_one_line_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    options = million.parse(["--subscriptions", "50000", "--csv", "s.csv"])
    assert (options.subscriptions, options.latency_ms, options.reconcile_after) == (50000, 300, 300)
    assert options.csv == Path("s.csv")
    for bad in (["--subscriptions", "0"], ["--sample-every", "0"], ["--workers", "two"]):
        with pytest.raises(SystemExit) as exited:
            million.parse(bad)
        assert exited.value.code == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith("python -m bench.million: error: ") and "--" in last


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [(0, 1), (1, 1), (7, 10), (12, 20), (130, 200), (4000, 5000), (2006, 2500), (0.3, 0.5)],
)
def test_the_axes_end_at_a_round_number_at_or_above_the_largest_value(
    value: float, ceiling: float
) -> None:
    assert nice_ceiling(value) == pytest.approx(ceiling)


def test_the_plot_is_svg_with_one_line_per_series_ending_at_the_last_sample() -> None:
    rows = [
        {column: float(n * 10) for column in million.COLUMNS} | {"seconds": float(n)}
        for n in range(5)
    ]
    options = million.parse(["--subscriptions", "40"])
    svg = million.plot(rows, options)
    root = ET.fromstring(svg)
    lines = root.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 5  # waiting, queue; age, the window; re-published
    assert all(len(line.attrib["points"].split()) == 5 for line in lines)
    assert "40 subscriptions due at once" in svg


def test_an_empty_panel_still_draws() -> None:
    svg = chart("nothing", [], [Panel("none", "count", {"a": []})])
    assert ET.fromstring(svg).tag.endswith("svg")


def test_the_samples_go_to_a_csv_with_a_header(tmp_path: Path) -> None:
    rows = [dict.fromkeys(million.COLUMNS, 1.0)]
    path = tmp_path / "samples.csv"
    million.write_csv(path, rows)
    with path.open() as handle:
        read = list(csv.DictReader(handle))
    assert list(read[0]) == list(million.COLUMNS)
