"""Every finding points at its key, with the key's line: a missing key where it belongs, a
repeated key at each of its lines, a syntax error at its line and column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cnisdk._validate import FileReport, validate_paths

from .conftest import CORPUS, REAL_CNI

# Findings about the whole file: its extension, its shape, its place in a directory.
WHOLE_FILE = {"CV001", "CV003", "CV006", "CV007", "CV009", "CV013", "CV014", "CV015", "CV500",
              "CV501", "CV502"}  # fmt: skip


async def check(path: Path, **kw: Any) -> FileReport:
    (report,) = await validate_paths([str(path)], cni_path=[], check_presence=False, **kw)
    return report


def located(report: FileReport) -> list[tuple[str, str, int | None]]:
    return [(f.code, f.location, f.line) for f in report.findings]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # A missing key is located where it belongs, at the line of the object it belongs in.
        ('{\n  "cniVersion": "1.1.0",\n  "plugins": [{"type": "bridge"}]\n}',
         [("CV020", "name", 1)]),
        ('{\n  "cniVersion": "1.1.0",\n  "name": "n"\n}', [("CV010", "plugins", 1)]),
        ('{\n  "name": "n",\n  "plugins": [\n    {"type": "bridge"}\n  ]\n}',
         [("CV025", "cniVersion", 1), ("CV210", "cniVersion", 1), ("CV211", "cniVersion", 1)]),
        ('{\n  "cniVersion": "1.1.0",\n  "name": "n",\n  "plugins": [\n    {"type": "bridge"},\n'
         '    {"mtu": 1400},\n    {"type": "portmap", "capabilities": {"portMappings": true}}\n'
         "  ]\n}",
         [("CV040", "plugins[1].type", 6)]),
        ('{\n  "cniVersion": "1.1.0",\n  "name": "n",\n  "plugins": [\n    {"type": "vlan",\n'
         '     "ipam": {"type": "host-local", "subnet": "10.1.0.0/16"}}\n  ]\n}',
         [("CV310", "plugins[0].master", 5)]),
        ('{\n  "cniVersion": "1.1.0",\n  "name": "n",\n  "plugins": [\n    {"type": "bridge",\n'
         '     "ipam": {"subnet": "10.1.0.0/16"}}\n  ]\n}',
         [("CV047", "plugins[0].ipam.type", 6)]),
    ],
    ids=["name", "plugins", "cniVersion", "plugin-type", "model-required", "ipam-type"],
)  # fmt: skip
async def test_missing_key_points_where_it_belongs(
    tmp_path: Path, body: str, expected: list[tuple[str, str, int]]
) -> None:
    path = tmp_path / "net.conflist"
    path.write_text(body)
    assert located(await check(path)) == expected


@pytest.mark.anyio
async def test_repeated_key_names_each_line(tmp_path: Path) -> None:
    path = tmp_path / "net.conflist"
    path.write_text(
        '{\n  "cniVersion": "1.1.0",\n  "name": "a",\n  "plugins": [\n    {\n'
        '      "type": "bridge",\n      "mtu": 1400,\n      "bridge": "cni0",\n'
        '      "mtu": 9000\n    }\n  ],\n  "name": "b"\n}'
    )
    report = await check(path)
    assert located(report) == [("CV004", "plugins[0].mtu", 7), ("CV004", "name", 3)]
    mtu, name = report.findings
    assert "appears 2 times in one object (lines 7, 9)" in mtu.message
    assert "use the last one (line 9)" in mtu.message
    assert "(lines 3, 12)" in name.message


@pytest.mark.anyio
async def test_tuning_refuses_a_repeated_sysctl_key(tmp_path: Path) -> None:
    path = tmp_path / "net.conflist"
    path.write_text(
        '{"cniVersion": "1.1.0", "name": "n", "plugins": [{"type": "bridge"},\n'
        ' {"type": "tuning", "sysctl": {\n   "net.core.somaxconn": "500",\n'
        '   "net.core.somaxconn": "600"}}]}'
    )
    report = await check(path)
    key = "plugins[1].sysctl.net.core.somaxconn"
    assert located(report) == [("CV311", key, 4), ("CV004", key, 3)]
    # tuning v1.1.1 took the last one silently: only the repeated key is worth a warning there
    # (and its plugins speak no 1.1.0).
    older = await check(path, plugins_release=(1, 1, 1))
    assert [f for f in located(older) if f[0] != "CV203"] == [("CV004", key, 3)]


@pytest.mark.anyio
async def test_keys_match_as_go_matches_them(tmp_path: Path) -> None:
    # A plugin entry is a Go struct: "MTU" is mtu. The list itself is a Go map: "Name" is not
    # name, and libcni does not load the file.
    path = tmp_path / "net.conflist"
    path.write_text(
        '{"cniVersion": "1.1.0", "Name": "n",\n "plugins": [{"Type": "bridge",\n "MTU": "x"}]}'
    )
    report = await check(path)
    assert located(report) == [("CV020", "name", 1), ("CV310", "plugins[0].mtu", 3)]


@pytest.mark.anyio
async def test_syntax_error_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "net.conflist"
    path.write_text('{\n  "name": "n",\n  "plugins": [\n    {"type": "bridge",}\n  ]\n}')
    report = await check(path)
    assert located(report) == [("CV002", "line 4, column 23", 4)]
    path.write_text('{\n  "name": "n",\n  "plugins": [\n')
    assert located(await check(path)) == [("CV002", "line 4, column 1", 4)]


@pytest.mark.anyio
async def test_every_corpus_finding_has_a_location(stub_bin: Path) -> None:
    reports = await validate_paths(
        [str(CORPUS / "bad"), *map(str, sorted((CORPUS / "bad").iterdir()))],
        cni_path=[str(stub_bin), REAL_CNI],
        exec_binaries=False,
    )
    seen = set()
    for report in reports:
        for finding in report.findings:
            seen.add(finding.code)
            if finding.code in WHOLE_FILE:
                continue
            assert finding.location, (report.path, finding)
            if not report.path.endswith("expected.json"):
                assert finding.line is not None, (report.path, finding)
    assert len(seen) > 40


def test_expected_locations_are_written_out() -> None:
    expected = json.loads((CORPUS / "bad" / "expected.json").read_text())
    for name, findings in expected.items():
        for code, _, location in findings:
            assert location or code in WHOLE_FILE | {"CV301"}, (name, code)
