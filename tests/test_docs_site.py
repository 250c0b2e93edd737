"""The built documentation works from disk with no network: diagrams drawn, links to files,
search from file://, and nothing fetched from elsewhere when a page is viewed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
DIAGRAM = re.compile(r"<code>(sequenceDiagram|flowchart|graph) ")


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed (./dev test installs it)"
        if os.environ.get("CNISDK_REQUIRE_NETNS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _require("npm")
    out = tmp_path_factory.mktemp("site")
    subprocess.run(
        [str(ROOT / "docs" / "build.sh"), "--quiet", "-d", str(out)],
        check=True,
        timeout=600,
        capture_output=True,
    )
    return out


def _pages_with_diagrams() -> list[str]:
    pages = []
    for source in sorted((ROOT / "docs").rglob("*.md")):
        if "```mermaid" in source.read_text():
            pages.append(str(source.relative_to(ROOT / "docs").with_suffix(".html")))
    return pages


def test_diagram_pages_are_found() -> None:
    assert "architecture.html" in _pages_with_diagrams()


@pytest.mark.parametrize("page", _pages_with_diagrams())
def test_diagrams_are_drawn_from_disk_with_no_network(site: Path, page: str) -> None:
    chromium = _require("chromium")
    profile = site.parent / f"profile-{page.replace('/', '-')}"
    dom = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            # Every network request fails: only what the site carries can be used.
            "--proxy-server=127.0.0.1:9",
            "--virtual-time-budget=15000",
            "--dump-dom",
            (site / page).as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert 'class="md-content"' in dom
    # A diagram Mermaid did not draw stays as its source text in a code block.
    assert not DIAGRAM.search(dom), f"{page}: a diagram was not drawn"
    assert dom.count('class="mermaid"') >= 1


def test_nothing_is_loaded_from_elsewhere(site: Path) -> None:
    loaded = re.compile(r'<(?:script|link|img)[^>]*(?:src|href)="(https?:)?//[^"]*"')
    for html in site.rglob("*.html"):
        text = html.read_text()
        tags = [m.group(0) for m in loaded.finditer(text) if 'rel="canonical"' not in m.group(0)]
        assert not tags, f"{html.relative_to(site)} loads {tags}"
    for css in site.rglob("*.css"):
        assert "@import url(" not in css.read_text() or "//" not in css.read_text()


def test_links_name_files_that_exist(site: Path) -> None:
    href = re.compile(r'href="([^"#?]+)[^"]*"')
    for html in site.rglob("*.html"):
        if html.name == "404.html":
            continue  # served by a web server for missing paths, with root-relative links
        for target in href.findall(html.read_text()):
            if urlsplit(target).scheme or target.startswith("//"):
                continue
            resolved = (html.parent / unquote(target)).resolve()
            assert resolved.is_file(), f"{html.relative_to(site)} links to {target}"
    assert (site / "search" / "search_index.js").is_file()  # search without a server
