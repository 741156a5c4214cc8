"""Fuzzing the plan catalog loader (billing/catalog_file.py ``parse_catalog``).

Random bytes, truncated catalogs, deep nesting, huge documents, wrong types anywhere and
YAML tricks: the loader answers a Catalog or one CatalogError line that names the file, and
never another exception. A refused catalog changes nothing (the parser has no side effects;
``plans load`` runs it before touching the database, see test_cli_fuzz.py).
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.catalog_file import MAX_CATALOG_BYTES, load_catalog_file, parse_catalog
from billing.domain.plans import Catalog
from billing.errors import CatalogError
from tests.fuzz.strategies import binary, json_values
from tests.processes import ROOT

SOURCE = "fuzz.yaml"
SHIPPED = (ROOT / "schedules" / "plans.yaml").read_bytes()
FUZZ = settings(max_examples=300, deadline=None)


def judge(raw: bytes | str) -> Catalog | None:
    try:
        return parse_catalog(raw, SOURCE, "Asia/Seoul")
    except CatalogError as exc:
        assert exc.message.startswith(f"{SOURCE}: "), exc.message
        assert "\n" not in exc.message
        return None


def test_the_shipped_catalog_parses() -> None:
    catalog = judge(SHIPPED)
    assert catalog is not None and len(catalog.plans) == 4


def test_every_truncation_of_the_shipped_catalog_is_a_catalog_or_a_clean_refusal() -> None:
    for cut in range(len(SHIPPED)):
        judge(SHIPPED[:cut])


@FUZZ
@given(binary)
def test_random_bytes_and_text(raw: bytes) -> None:
    judge(raw)


@pytest.mark.parametrize("depth", [10, 1000, 5000])
@pytest.mark.parametrize("brackets", ["[]", "{}"])
def test_deep_nesting(depth: int, brackets: str) -> None:
    opener, closer = brackets[0], brackets[1]
    inner = "a: " if opener == "{" else ""
    raw = (opener + inner) * depth + "1" + closer * depth
    for document in (raw, "plans: " + raw, "plans:\n  - id: p\n    name: " + raw, "- " * depth):
        judge(document)


@FUZZ
@given(json_values)
def test_any_yaml_document(value: Any) -> None:
    judge(yaml.safe_dump(value, allow_unicode=True))
    judge(yaml.safe_dump({"plans": value}, allow_unicode=True))


PATHS = [
    ("timezone",),
    ("dunning",),
    ("dunning", "retry_after"),
    ("dunning", "final_action"),
    ("notify",),
    ("plans",),
    ("plans", 0),
    ("plans", 0, "id"),
    ("plans", 0, "name"),
    ("plans", 0, "amount"),
    ("plans", 0, "interval"),
    ("plans", 1, "trial_days"),
    ("plans", 2, "card_quota"),
    ("plans", 3, "cron"),
    ("plans", 3, "prorate_first"),
    ("plans", 3, "dunning", "retry_after"),
    ("plans", 3, "dunning", "retry_after", 0),
    ("plans", 0, "unknown_key"),
    ("unknown_key",),
    ("plans", 0, "timezone"),
]
TRICKY = [
    None,
    True,
    0,
    -1,
    1.5,
    9900.0,
    10**13,
    2**63,
    "",
    " ",
    "9900",
    "1 month",
    "0 month",
    "13 months",
    "1 fortnight",
    "* * * * *",
    "61 * * * *",
    "0 0 30 2 *",
    "@daily",
    "0 0 * * * *",
    "Asia/Nowhere",
    "../../etc/passwd",
    "a" * 100,
    "플랜" * 30,
    [],
    {},
    [1],
    {"a": 1},
    "cancel",
    "delete",
    ["1d", "1d"],
    ["3d", "1d"],
    ["-1d"],
    ["0s"],
    ["1d"] * 20,
]


@FUZZ
@given(st.sampled_from(PATHS), st.one_of(st.sampled_from(TRICKY), json_values))
def test_a_wrong_value_anywhere_in_the_shipped_catalog(path: tuple[Any, ...], value: Any) -> None:
    document = copy.deepcopy(yaml.safe_load(SHIPPED))
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    judge(yaml.safe_dump(document, allow_unicode=True))


@pytest.mark.parametrize(
    "raw",
    [
        "plans: !!python/object/apply:os.system ['touch /tmp/pwned-by-yaml']",
        "plans: !!binary aGVsbG8=",
        "plans: [*undefined]",
        "plans:\n  - &p {id: a, name: A, amount: 1, interval: 1 month}\n  - *p",
        "plans:\n  - {id: a, name: A, amount: 1, interval: 1 month, id: b}",
        "plans: []\nplans: []",
        "%YAML 1.1\n%YAML 1.1\n---\nplans: []",
        "--- a\n--- b",
        "plans: [{<<: {id: a, name: A}, amount: 1, interval: 1 month}]",
        "\ufeffplans: []",
        "plans:\n\t- id: a",
        "plans: [" + "{id: p%d, name: P, amount: 1, interval: 1 month}, " * 3000 + "]",
        "plans:\n  - {id: a, name: '" + "x" * 1_000_000 + "', amount: 1, interval: 1 month}",
        "plans:\n  - {id: '" + "x" * 100_000 + "', name: 1, amount: 1, interval: 1 month}",
    ],
)
def test_yaml_tricks_and_huge_documents(raw: str) -> None:
    judge(raw)
    assert not Path("/tmp/pwned-by-yaml").exists()


@pytest.mark.parametrize("raw", ["? [a, b]\n: c\nplans: []", "plans: [{? {a: 1}: 2}]"])
def test_a_complex_mapping_key_is_refused_as_a_bad_catalog(raw: str) -> None:
    judge(raw)


def test_a_file_over_the_size_limit_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"#" * (MAX_CATALOG_BYTES + 1))
    with pytest.raises(CatalogError, match="larger than"):
        load_catalog_file(path, "Asia/Seoul")


LAUGHS = """
x-anchors:
  a0: &a0 [x, x, x, x, x, x, x, x, x]
{levels}
plans:
  - {{id: p, name: *a{top}, amount: 1, interval: 1 month}}
"""


def laughs(levels: int) -> str:
    lines = [f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return LAUGHS.format(levels="\n".join(lines), top=levels - 1)


def test_yaml_aliases_that_stay_small_are_refused() -> None:
    assert judge(laughs(3)) is None


def test_a_billion_laughs_catalog_is_refused_within_seconds(tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(laughs(9))
    code = f"from billing.catalog_file import load_catalog_file as f; f(__import__('pathlib').Path({str(path)!r}), 'UTC')"
    try:
        subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, timeout=4, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail("still parsing after 4 s")
