"""The README keeps its promises: every link inside the repository leads somewhere, the
contract it points at is in the repository, and its quick start and sandbox commands run as
written (issue 18)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import httpx

from tests.outage import spare_port
from tests.processes import wait_for

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


# -- the shell blocks of the quick start and the sandbox section, run as written ------------

SUITE = "make test"  # the suite itself: running it from inside the suite would recurse


def shell_blocks(section: str) -> list[list[str]]:
    """The command lines of every ```sh block under the ``## section`` heading."""
    text = README.read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", body, re.DOTALL)
    return [[line for line in block.splitlines() if line.strip()] for block in blocks]


def shell_env(tmp_path: Path) -> dict[str, str]:
    """A user's shell: the product on PATH, no BILLING_ variables, and curl failing on an
    HTTP error (~/.curlrc: --fail) so that a 400 is an exit code, not a line of text."""
    (tmp_path / ".curlrc").write_text("--fail\n--silent\n--show-error\n")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BILLING_", "FLOWER_"))}
    path = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{base.get('PATH', '')}"
    return {**base, "PATH": path, "CURL_HOME": str(tmp_path), "HOME": str(tmp_path)}


def run_line(line: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", line],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_sandbox_section_runs_as_written(tmp_path: Path) -> None:
    [block] = shell_blocks("The PortOne sandbox")
    port = str(spare_port())  # 8089 may be taken on a shared machine: the same block, one port
    lines = [line.replace("8089", port) for line in block]
    env = shell_env(tmp_path)
    background: list[subprocess.Popen[bytes]] = []
    try:
        for line in lines:
            if line.endswith("&"):
                background.append(
                    subprocess.Popen(
                        ["sh", "-c", f"exec {line.removesuffix('&').strip()}"],
                        env=env,
                        cwd=tmp_path,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
                wait_for(lambda: _answers(int(port)), 30, line)
                continue
            done = run_line(line, env, tmp_path)
            assert done.returncode == 0, f"{line}\n{done.stdout}{done.stderr}"
            assert json.loads(done.stdout) is not None
    finally:
        for process in background:
            process.terminate()
            process.wait(20)
    assert any("__sandbox__/ledger" in line for line in lines)


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/__sandbox__/ledger", timeout=2).is_success
    except httpx.TransportError:
        return False


def test_the_quick_start_runs_as_written(tmp_path: Path) -> None:
    """`make demo`: a simulated year against the bundled sandbox, every invariant checked."""
    [block] = shell_blocks("Quick start")
    commands = [line.split("#", 1)[0].strip() for line in block]
    assert SUITE in commands and len(commands) == 2, commands
    for command in commands:
        if command == SUITE:
            continue
        done = run_line(command, shell_env(tmp_path), ROOT)
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        assert "invariant" in done.stdout.lower(), done.stdout[-3000:]
