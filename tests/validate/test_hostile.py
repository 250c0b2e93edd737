"""``cnisdk validate`` on hostile or broken input: a finding and a bounded cost, never a hang,
a traceback or unbounded memory; and what Go accepts is judged as libcni judges it."""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnisdk._cli import main
from cnisdk._confdir import MAX_CONF_BYTES
from cnisdk._validate import CODES, FileReport, validate_paths

from .conftest import gone_within, write_plugin

GOOD = '{"cniVersion": "1.1.0", "name": "net", "plugins": [{"type": "bridge"}]}'


async def check(*paths: Path, cni_path: list[str] | None = None, **kw: Any) -> list[FileReport]:
    return await validate_paths(
        [str(p) for p in paths], cni_path=cni_path or [], check_presence=False, **kw
    )


def codes(report: FileReport) -> list[tuple[str, str]]:
    return [(f.code, f.location) for f in report.findings]


@pytest.mark.anyio
async def test_fifo_named_is_a_finding_without_reading(tmp_path: Path) -> None:
    fifo = tmp_path / "10-net.conflist"
    os.mkfifo(fifo)
    with anyio.fail_after(5):  # opening a FIFO for reading would block until a writer comes
        (report,) = await check(fifo)
    assert codes(report) == [("CV006", "")]
    assert "is a FIFO, not a regular file" in report.findings[0].message


@pytest.mark.anyio
async def test_fifo_in_a_directory(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "01-fifo.conflist")
    (tmp_path / "10-net.conflist").write_text(GOOD)
    with anyio.fail_after(5):
        reports = await check(tmp_path)
    assert [(Path(r.path).name, r.selected, [f.code for f in r.findings]) for r in reports] == [
        ("01-fifo.conflist", False, ["CV006", "CV502"]),
        ("10-net.conflist", True, []),
    ]


@pytest.mark.anyio
async def test_dev_zero_is_not_read(tmp_path: Path) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with anyio.fail_after(5):
        (report,) = await check(Path("/dev/zero"))
    assert codes(report) == [("CV006", ""), ("CV015", "")]
    assert "is a device" in report.findings[0].message
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024  # KiB


@pytest.mark.anyio
async def test_file_over_the_cap_is_a_finding(tmp_path: Path) -> None:
    path = tmp_path / "big.conflist"
    path.write_text(GOOD[:-1] + ', "pad": "' + "x" * MAX_CONF_BYTES + '"}')
    (report,) = await check(path)
    assert codes(report) == [("CV007", "")]
    path.write_text(GOOD[:-1] + ', "pad": "' + "x" * (MAX_CONF_BYTES - 200) + '"}')
    (report,) = await check(path)
    assert codes(report) == []


@pytest.mark.anyio
async def test_symlink_loop_is_named(tmp_path: Path) -> None:
    loop = tmp_path / "10-loop.conflist"
    loop.symlink_to(tmp_path / "10-loop.conflist")
    (report,) = await check(loop)
    assert codes(report) == [("CV001", "")]
    assert "symlink loop" in report.findings[0].message
    (tmp_path / "20-net.conflist").write_text(GOOD)
    dir_reports = await check(tmp_path)
    assert ["symlink loop" in f.message for f in dir_reports[0].findings if f.code == "CV001"] == [
        True
    ]
    assert [r.selected for r in dir_reports] == [False, True]


@pytest.mark.anyio
async def test_dangling_symlink_is_named(tmp_path: Path) -> None:
    link = tmp_path / "10-gone.conflist"
    link.symlink_to(tmp_path / "nowhere.conflist")
    (report,) = await check(link)
    assert codes(report) == [("CV001", "")]
    assert "dangling symlink" in report.findings[0].message


@pytest.mark.anyio
@pytest.mark.parametrize("depth", [200, 5000, 9990])
async def test_nesting_go_accepts_is_judged_not_raised(tmp_path: Path, depth: int) -> None:
    path = tmp_path / "deep.conflist"
    deep = "[" * depth + "]" * depth
    path.write_text(
        '{"cniVersion": "1.1.0", "name": "n", "plugins": [{"type": "bridge", "mtu": '
        f'{deep}}}, {{"type": "passthrough", "x": {deep}, "args": {deep}}}]}}'
    )
    (report,) = await check(path)
    assert sorted(codes(report)) == [
        ("CV300", "plugins[1].args"),
        ("CV310", "plugins[0].mtu"),
        ("CV320", "plugins[1].x"),
    ]
    assert "(got an array of 1 item)" in report.findings[0].message


@pytest.mark.anyio
async def test_nesting_deeper_than_go_allows_is_a_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.conflist"
    prefix = '{"name": "n", "plugins": [{"type": "x", "y": '
    path.write_text(prefix + "[" * 10001)
    (report,) = await check(path)
    (finding,) = report.findings
    # Three levels are open before the arrays: the 9998th array is one too many.
    assert (finding.code, finding.location) == ("CV002", f"line 1, column {len(prefix) + 9998}")
    assert "exceeded max depth" in finding.message


@pytest.mark.anyio
async def test_latin1_is_judged_as_libcni_judges_it(tmp_path: Path) -> None:
    # Go reads invalid UTF-8 (as U+FFFD): libcni loads the file, and so does validate.
    (tmp_path / "10-latin1.conflist").write_bytes(
        b'{"cniVersion": "1.1.0", "name": "l",\n "plugins": [{"type": "bridge", '
        b'"bridge": "br-caf\xe9"}]}'
    )
    (tmp_path / "20-utf8.conflist").write_text(GOOD)
    reports = await check(tmp_path)
    assert [r.selected for r in reports] == [True, False]
    first = reports[0].findings
    # The bridge is then named "br-caf\ufffd" (which the kernel takes): a warning, no error.
    assert [(f.code, f.severity, f.location, f.line) for f in first] == [
        ("CV005", "warning", "plugins[0].bridge", 2)
    ]
    assert "byte 0xe9 at line 2, column 50 is not UTF-8" in first[0].message


@pytest.mark.anyio
async def test_flooding_version_output_stays_bounded(tmp_path: Path) -> None:
    pidfile = tmp_path / "child"
    write_plugin(tmp_path, "flood", f"sleep 30 &\necho $! > {pidfile}\nexec cat /dev/zero")
    path = tmp_path / "net.conflist"
    path.write_text(
        json.dumps({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "flood"}]})
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    (report,) = await validate_paths([str(path)], cni_path=[str(tmp_path)], timeout=20)
    assert time.monotonic() - start < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024  # KiB
    (flood,) = [f for f in report.findings if f.code == "CV202"]
    assert "over 64 KiB" in flood.message
    # Killed with its whole process group, as on a timeout.
    assert await anyio.to_thread.run_sync(gone_within, int(pidfile.read_text()), 5.0)


def test_cli_on_hostile_paths_exits_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "fifo.conflist"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.conflist"
    loop.symlink_to(loop)
    assert main(["validate", "--config-only", str(fifo), str(loop), "/dev/zero"]) == 1
    out = capsys.readouterr().out
    assert out.count("CV006") == 2
    assert "symlink loop" in out


# --------------------------------------------------------------------------- the class of input

_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
_JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=30,
)
# Documents shaped like configs, so the checks past the JSON layer run too.
_KEYS = st.sampled_from(
    ["type", "name", "cniVersion", "ipam", "ranges", "subnet", "rangeStart", "capabilities",
     "plugins", "mtu", "vlan", "routes", "dst", "gw", "sysctl", "bridge", "master", "mac",
     "addresses", "address", "portMappings", "backend", "kubernetes", "args", "dns"]
)  # fmt: skip
_TYPES = st.sampled_from(
    ["bridge", "ptp", "macvlan", "ipvlan", "vlan", "host-device", "loopback", "dummy", "tap",
     "host-local", "static", "dhcp", "portmap", "bandwidth", "tuning", "firewall", "sbr", "vrf",
     "passthrough", "istio-redirect", "unknown"]
)  # fmt: skip
_VALUES = st.recursive(
    _SCALARS | _TYPES | st.sampled_from(["10.0.0.0/8", "10.0.0.1", "fd00::/64", "eth0"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=25,
)
_ENTRY = st.dictionaries(_KEYS, _VALUES, max_size=6).flatmap(
    lambda d: _TYPES.map(lambda t: {**d, "type": t})
)
_CONFIG = st.fixed_dictionaries(
    {"cniVersion": st.sampled_from(["1.1.0", "0.3.1", "x", ""]), "name": st.text(max_size=8)},
    optional={"plugins": st.lists(_ENTRY, max_size=4)},
)

_FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _validate_bytes(tmp_path: Path, data: bytes, suffix: str) -> list[FileReport]:
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)

    async def run() -> list[FileReport]:
        with anyio.fail_after(10):
            return await check(path)

    reports = anyio.run(run)
    for report in reports:
        for finding in report.findings:
            assert finding.code in CODES
            assert finding.message
            assert finding.line is None or finding.line >= 1
    return reports


@_FUZZ
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".conflist", ".conf", ".txt"]))
def test_arbitrary_bytes_never_raise(tmp_path: Path, data: bytes, suffix: str) -> None:
    _validate_bytes(tmp_path, data, suffix)


@_FUZZ
@given(doc=_JSON, suffix=st.sampled_from([".conflist", ".conf"]))
def test_arbitrary_json_never_raises(tmp_path: Path, doc: Any, suffix: str) -> None:
    _validate_bytes(tmp_path, json.dumps(doc).encode(), suffix)


@_FUZZ
@given(doc=_CONFIG)
def test_config_shaped_documents_never_raise(tmp_path: Path, doc: Any) -> None:
    reports = _validate_bytes(tmp_path, json.dumps(doc).encode(), ".conflist")
    # Only findings about the whole file may lack a location.
    whole_file = {"CV001", "CV003", "CV006", "CV007", "CV009", "CV013", "CV014", "CV015", "CV301"}
    for finding in reports[0].findings:
        assert finding.location or finding.code in whole_file, finding
