"""``cnisdk validate``: the corpus of good and bad configs, binaries, directories, the command."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from cnisdk import _discovery
from cnisdk._cli import main
from cnisdk._validate import CODES, FileReport, Finding, ValidateError, validate_paths

from .conftest import CORPUS, REAL_CNI, gone_within, version_answer, write_plugin

BAD = CORPUS / "bad"
GOOD = CORPUS / "good"
EXPECTED: dict[str, list[list[str]]] = json.loads((BAD / "expected.json").read_text())
GOOD_FILES = sorted(p.name for p in GOOD.iterdir())
DOCS = Path(__file__).parents[2] / "docs" / "validate.md"


async def check(
    *paths: Path | str,
    cni_path: list[str],
    exec_binaries: bool = True,
    timeout: float = 5,  # noqa: ASYNC109
) -> list[FileReport]:
    return await validate_paths(
        [str(p) for p in paths], cni_path=cni_path, exec_binaries=exec_binaries, timeout=timeout
    )


def triples(report: FileReport, *, skip: tuple[str, ...] = ()) -> list[tuple[str, str, str]]:
    return sorted((f.code, f.severity, f.location) for f in report.findings if f.code not in skip)


# The notes every config below 1.1.0 gets; the binary tests are not about them.
VERB_NOTES = ("CV210", "CV211")


def only(report: FileReport) -> Finding:
    (finding,) = [f for f in report.findings if f.code not in VERB_NOTES]
    return finding


def problems(report: FileReport) -> list[tuple[str, str, str]]:
    return triples(report, skip=VERB_NOTES)


# --------------------------------------------------------------------------- corpus


def test_every_bad_file_declares_its_codes() -> None:
    files = {p.name for p in BAD.iterdir()} - {"expected.json"}
    assert files == set(EXPECTED)
    for codes in EXPECTED.values():
        for code, severity, _ in codes:
            assert CODES[code][0] == severity


@pytest.mark.anyio
@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_bad_file_produces_exactly_its_findings(name: str, stub_bin: Path) -> None:
    (report,) = await check(BAD / name, cni_path=[str(stub_bin), REAL_CNI], exec_binaries=False)
    assert report.selected is None
    assert triples(report) == sorted(tuple(c) for c in EXPECTED[name])
    for finding in report.findings:
        assert finding.message.strip()


@pytest.mark.anyio
@pytest.mark.parametrize("exec_binaries", [True, False], ids=["exec", "no-exec"])
@pytest.mark.parametrize("name", GOOD_FILES)
async def test_real_world_config_passes(name: str, exec_binaries: bool, stub_bin: Path) -> None:
    (report,) = await check(
        GOOD / name, cni_path=[str(stub_bin), REAL_CNI], exec_binaries=exec_binaries
    )
    assert [f for f in report.findings if f.severity != "info"] == []


@pytest.mark.anyio
async def test_syntax_error_location_points_at_the_mistake(tmp_path: Path) -> None:
    path = tmp_path / "x.conflist"
    path.write_text('{"cniVersion": "1.0.0",\n "name": "n"\n "plugins": []}')
    (report,) = await check(path, cni_path=[], exec_binaries=False)
    (finding,) = report.findings
    assert (finding.code, finding.location, finding.line) == ("CV002", "line 3, column 2", 3)
    # Go's words, as a runtime logs them.
    assert "invalid character '\"' after object key:value pair" in finding.message


# --------------------------------------------------------------------------- binaries


def conflist(tmp_path: Path, version: str, *types: str, name: str = "net.conflist") -> Path:
    path = tmp_path / name
    plugins: list[dict[str, Any]] = [{"type": t} for t in types]
    path.write_text(json.dumps({"cniVersion": version, "name": "net", "plugins": plugins}))
    return path


@pytest.mark.anyio
async def test_debian_plugins_do_not_speak_1_1_0(tmp_path: Path) -> None:
    path = tmp_path / "net.conflist"
    path.write_text(json.dumps({
        "cniVersion": "1.1.0", "name": "net",
        "plugins": [{"type": "bridge", "ipam": {"type": "host-local", "subnet": "10.9.0.0/16"}},
                    {"type": "portmap", "capabilities": {"portMappings": True}}],
    }))  # fmt: skip
    (report,) = await check(path, cni_path=[REAL_CNI])
    assert problems(report) == [
        ("CV203", "error", "plugins[0].ipam.type"),
        ("CV203", "error", "plugins[0].type"),
        ("CV203", "error", "plugins[1].type"),
    ]
    assert "it supports 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0" in report.findings[0].message


@pytest.mark.anyio
async def test_debian_plugins_at_0_3_1_suggest_1_0_0(tmp_path: Path) -> None:
    (report,) = await check(conflist(tmp_path, "0.3.1", "bridge", "tuning"), cni_path=[REAL_CNI])
    assert triples(report) == [
        ("CV210", "info", "cniVersion"),
        ("CV211", "info", "cniVersion"),
        ("CV213", "info", "cniVersion"),
    ]
    assert "raise cniVersion to 1.0.0 to get CHECK" in report.findings[-1].message


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "code", "text"),
    [
        (version_answer(["0.3.0", "0.3.1"]), "CV203", "it supports 0.3.0, 0.3.1"),
        ("echo '{\"code\":4,\"msg\":\"unknown CNI_COMMAND: VERSION\"}'; exit 1", "CV203",
         "it supports 0.1.0"),
        ("echo '{\"code\":7,\"msg\":\"boom\"}'; exit 1", "CV202", "failed with code 7: boom"),
        ("echo not json", "CV202", "not a JSON object"),
        ("echo '{\"supportedVersions\":[\"1.0.0\"]}'", "CV202", "missing field cniVersion"),
        ("exit 3", "CV202", "exited with status 3"),
    ],
    ids=["old-versions", "unknown-command", "cni-error", "garbage", "no-cniversion", "crash"],
)  # fmt: skip
async def test_fake_plugin_version_answers(tmp_path: Path, body: str, code: str, text: str) -> None:
    write_plugin(tmp_path, "fake", body)
    (report,) = await check(conflist(tmp_path, "1.0.0", "fake"), cni_path=[str(tmp_path)])
    finding = only(report)
    assert (finding.code, finding.location) == (code, "plugins[0].type")
    assert text in finding.message


@pytest.mark.anyio
async def test_hanging_plugin_times_out_quickly(tmp_path: Path) -> None:
    write_plugin(tmp_path, "hang", "sleep 30")
    start = time.monotonic()
    (report,) = await check(
        conflist(tmp_path, "1.0.0", "hang"), cni_path=[str(tmp_path)], timeout=0.5
    )
    assert time.monotonic() - start < 5
    assert problems(report) == [("CV204", "error", "plugins[0].type")]
    assert "within 0.5 s" in only(report).message


@pytest.mark.anyio
async def test_hanging_plugins_children_are_killed_too(tmp_path: Path) -> None:
    pidfile = tmp_path / "child"
    write_plugin(tmp_path, "hang", f"sleep 30 &\necho $! > {pidfile}\nwait")
    (report,) = await check(
        conflist(tmp_path, "1.0.0", "hang"), cni_path=[str(tmp_path)], timeout=0.5
    )
    assert problems(report) == [("CV204", "error", "plugins[0].type")]
    assert gone_within(int(pidfile.read_text()), 5)


@pytest.mark.anyio
async def test_each_binary_is_probed_once_and_concurrently(tmp_path: Path) -> None:
    write_plugin(tmp_path, "slow", f"sleep 0.4; {version_answer(['1.0.0'])}")
    write_plugin(tmp_path, "slow2", f"sleep 0.4; {version_answer(['1.0.0'])}")
    files = [conflist(tmp_path, "1.0.0", "slow", "slow2", name=f"{i}.conflist") for i in range(4)]
    start = time.monotonic()
    reports = await check(*files, cni_path=[str(tmp_path)])
    assert time.monotonic() - start < 1.5
    assert all(problems(r) == [] for r in reports)


@pytest.mark.anyio
async def test_not_executable_and_missing(tmp_path: Path) -> None:
    write_plugin(tmp_path, "noexec", version_answer(["1.0.0"]), mode=0o644)
    (report,) = await check(conflist(tmp_path, "1.0.0", "noexec"), cni_path=[str(tmp_path)])
    assert problems(report) == [("CV201", "error", "plugins[0].type")]
    assert "chmod" in only(report).message
    (report,) = await check(
        conflist(tmp_path, "1.0.0", "bridge", "passthrough"), cni_path=[str(tmp_path)]
    )
    # A cnisdk plugin installed in Python counts as present; a Go plugin does not.
    assert problems(report) == [
        ("CV200", "error", "plugins[0].type"),
        ("CV205", "info", "plugins[1].type"),
    ]
    (missing,) = [f for f in report.findings if f.code == "CV205"]
    assert "cnisdk install --bin-dir DIR passthrough" in missing.message


@pytest.mark.anyio
async def test_first_match_on_the_cni_path_wins(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    write_plugin(first, "fake", version_answer(["1.0.0"]))
    write_plugin(second, "fake", version_answer(["0.4.0"]))
    path = conflist(tmp_path, "1.0.0", "fake")
    assert problems((await check(path, cni_path=[str(first), str(second)]))[0]) == []
    (report,) = await check(path, cni_path=[str(second), str(first)])
    assert problems(report) == [("CV203", "error", "plugins[0].type")]


@pytest.mark.anyio
async def test_no_exec_does_not_run_anything(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    write_plugin(tmp_path, "fake", f"touch {marker}; {version_answer(['0.4.0'])}")
    (report,) = await check(
        conflist(tmp_path, "1.0.0", "fake"), cni_path=[str(tmp_path)], exec_binaries=False
    )
    assert problems(report) == []
    assert not marker.exists()


@pytest.mark.anyio
async def test_cnisdk_launcher_answers_version(tmp_path: Path) -> None:
    import sys

    from cnisdk._launcher import write_launcher

    # The launcher runs `python -I`, which ignores PYTHONPATH; this wrapper interpreter drops
    # -I so that the launcher imports cnisdk from the checkout, as an installed one would.
    root = Path(__file__).parents[2]
    wrapper = write_plugin(
        tmp_path,
        "python-wrapper",
        f'[ "$1" = -I ] && shift\n'
        f'PYTHONPATH={root}:{root / "plugins" / "examples"} exec {sys.executable} "$@"',
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    write_launcher(bin_dir, _discovery.find_plugins()["passthrough"], str(wrapper))
    path = conflist(tmp_path, "1.1.0", "bridge", "passthrough")
    (report,) = await check(path, cni_path=[str(bin_dir), REAL_CNI], timeout=20)
    # Debian's bridge stops at 1.0.0; the launcher speaks 1.1.0.
    assert problems(report) == [("CV203", "error", "plugins[0].type")]
    (report,) = await check(
        conflist(tmp_path, "0.4.0", "bridge", "passthrough"),
        cni_path=[str(bin_dir), REAL_CNI],
        timeout=20,
    )
    # 0.4.0 -> 1.0.0 would add no verb, so no CV213 note either.
    assert [f.code for f in report.findings] == ["CV211"]


# --------------------------------------------------------------------------- cnisdk models


@pytest.mark.anyio
async def test_model_errors_are_field_level(tmp_path: Path) -> None:
    path = tmp_path / "net.conflist"
    path.write_text(json.dumps({
        "cniVersion": "1.0.0", "name": "net",
        "plugins": [{"type": "ptp"}, {"type": "bridge", "bridge": "b0"},
                    {"type": "passthrough", "args": "x", "dns": {"search": [1]}}],
    }))  # fmt: skip
    (report,) = await check(path, cni_path=[REAL_CNI], exec_binaries=False)
    got = {(f.code, f.location) for f in report.findings if f.code == "CV300"}
    assert got == {("CV300", "plugins[2].args"), ("CV300", "plugins[2].dns.search[0]")}
    message = next(f.message for f in report.findings if f.location == "plugins[2].args")
    assert "cnisdk schema passthrough" in message


@pytest.mark.anyio
async def test_model_checks_supported_versions_without_exec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnisdk_examples.passthrough import Passthrough

    monkeypatch.setattr(Passthrough, "supported_versions", ("1.0.0",))
    write_plugin(tmp_path, "passthrough", "exit 1")
    (report,) = await check(
        conflist(tmp_path, "1.1.0", "bridge", "passthrough"),
        cni_path=[str(tmp_path), REAL_CNI],
        exec_binaries=False,
    )
    assert problems(report) == [("CV203", "error", "plugins[1].type")]


@pytest.mark.anyio
async def test_broken_entry_point(tmp_path: Path, registered_plugins: dict[str, Any]) -> None:
    registered_plugins["broken"] = _discovery.PluginEntry("broken", "no_such_module", "X", "d", "1")
    write_plugin(tmp_path, "broken", version_answer(["1.0.0"]))
    (report,) = await check(conflist(tmp_path, "1.0.0", "broken"), cni_path=[str(tmp_path)])
    assert problems(report) == [("CV301", "error", "plugins[0].type")]


@pytest.mark.anyio
async def test_entry_points_that_conflict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def conflict() -> dict[str, Any]:
        raise _discovery.PluginLoadError("plugin type 'x' is registered by both a and b")

    monkeypatch.setattr(_discovery, "find_plugins", conflict)
    (report,) = await check(conflist(tmp_path, "1.0.0", "bridge"), cni_path=[REAL_CNI])
    assert problems(report) == [("CV301", "error", "")]


# --------------------------------------------------------------------------- directories


@pytest.mark.anyio
async def test_directory_reports_the_file_a_runtime_uses(tmp_path: Path) -> None:
    netd = tmp_path / "net.d"
    netd.mkdir()
    (netd / "00-broken.conflist").write_text("{")
    (netd / "05-noplugins.conflist").write_text('{"cniVersion": "1.0.0", "name": "x"}')
    conflist(netd, "1.0.0", "bridge", name="10-bridge.conflist")
    (netd / "20-lo.conf").write_text('{"cniVersion": "1.0.0", "name": "lo", "type": "loopback"}')
    (netd / "calico-kubeconfig").write_text("apiVersion: v1")
    (netd / "sub.conf").mkdir()
    reports = await check(netd, cni_path=[REAL_CNI])
    assert [(Path(r.path).name, r.selected) for r in reports] == [
        ("00-broken.conflist", False),
        ("05-noplugins.conflist", False),
        ("10-bridge.conflist", True),
        ("20-lo.conf", False),
    ]
    codes = [[f.code for f in r.findings if f.code not in VERB_NOTES] for r in reports]
    assert codes == [["CV002", "CV502"], ["CV010", "CV502"], [], ["CV014", "CV501"]]


@pytest.mark.anyio
async def test_selection_order_is_lexical(tmp_path: Path) -> None:
    conflist(tmp_path, "1.0.0", "bridge", name="9-a.conflist")
    conflist(tmp_path, "1.0.0", "bridge", name="10-b.conflist")
    reports = await check(tmp_path, cni_path=[REAL_CNI])
    assert [Path(r.path).name for r in reports if r.selected] == ["10-b.conflist"]


@pytest.mark.anyio
async def test_directory_without_a_usable_file(tmp_path: Path) -> None:
    (tmp_path / "10-x.conflist").write_text("[]")
    reports = await check(tmp_path, cni_path=[])
    assert [(r.path, r.selected, [f.code for f in r.findings]) for r in reports] == [
        (str(tmp_path), None, ["CV500"]),
        (str(tmp_path / "10-x.conflist"), False, ["CV003"]),
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert [f.code for r in await check(empty, cni_path=[]) for f in r.findings] == ["CV500"]


@pytest.mark.anyio
async def test_good_corpus_as_a_directory(stub_bin: Path) -> None:
    reports = await check(GOOD, cni_path=[str(stub_bin), REAL_CNI])
    assert [Path(r.path).name for r in reports if r.selected] == ["05-cilium.conflist"]
    assert all(r.count("error") == 0 for r in reports)


@pytest.mark.anyio
async def test_missing_path_raises(tmp_path: Path) -> None:
    with pytest.raises(ValidateError, match="no such file"):
        await check(tmp_path / "nope.conflist", cni_path=[])


# --------------------------------------------------------------------------- the command


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["validate", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str], stub_bin: Path) -> None:
    path = f"--cni-path={stub_bin}:{REAL_CNI}"
    assert run_cli(capsys, str(GOOD / "10-calico.conflist"), path)[0] == 0
    assert run_cli(capsys, str(BAD / "binary-missing.conflist"), path)[0] == 1
    warning_only = str(BAD / "duplicate-type.conflist")
    assert run_cli(capsys, warning_only, path, "--no-exec")[0] == 0
    assert run_cli(capsys, warning_only, path, "--no-exec", "--strict")[0] == 1
    code, _, err = run_cli(capsys, str(tmp_path / "missing.conflist"))
    assert code == 2
    assert "no such file" in err
    for bad_flags in (["--output", "yaml", warning_only], ["--timeout", "0", warning_only], []):
        with pytest.raises(SystemExit) as exc:
            main(["validate", *bad_flags])
        assert exc.value.code == 2


def test_cni_path_from_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = str(conflist(tmp_path, "1.0.0", "bridge"))
    monkeypatch.setenv("CNI_PATH", str(tmp_path))
    code, out, _ = run_cli(capsys, path, "--output", "json")
    assert code == 1
    codes = [f["code"] for f in json.loads(out)["files"][0]["findings"]]
    assert "CV200" in codes
    monkeypatch.setenv("CNI_PATH", REAL_CNI)
    assert run_cli(capsys, path)[0] == 0


OUTPUT_SCHEMA = {
    "type": "object",
    "required": ["valid", "files"],
    "additionalProperties": False,
    "properties": {
        "valid": {"type": "boolean"},
        "files": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["path", "selected", "findings"],
                "additionalProperties": False,
                "properties": {
                    "path": {"type": "string"},
                    "selected": {"type": ["boolean", "null"]},
                    "findings": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["severity", "code", "message", "location", "line"],
                            "additionalProperties": False,
                            "properties": {
                                "severity": {"enum": ["error", "warning", "info"]},
                                "code": {"type": "string", "pattern": "^CV[0-9]{3}$"},
                                "message": {"type": "string", "minLength": 1},
                                "location": {"type": "string"},
                                "line": {"type": ["integer", "null"], "minimum": 1},
                            },
                        },
                    },
                },
            },
        },
    },
}


def test_json_output_schema(capsys: pytest.CaptureFixture[str], stub_bin: Path) -> None:
    code, out, _ = run_cli(
        capsys, str(GOOD), str(BAD / "capabilities.conflist"), f"--cni-path={stub_bin}:{REAL_CNI}",
        "--output", "json",
    )  # fmt: skip
    doc = json.loads(out)
    assert code == 1
    assert doc["valid"] is False
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(doc, OUTPUT_SCHEMA)
    assert {f["selected"] for f in doc["files"]} == {True, False, None}
    (bad,) = [f for f in doc["files"] if f["path"].endswith("capabilities.conflist")]
    assert bad["findings"][0] == {
        "severity": "error",
        "code": "CV044",
        "message": bad["findings"][0]["message"],
        "location": "plugins[1].capabilities.portMappings",
        "line": 16,
    }


def test_json_output_documented() -> None:
    text = DOCS.read_text()
    for key in ('"valid"', '"files"', '"selected"', '"findings"', '"severity"', '"location"'):
        assert key in text


def test_text_output(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = str(BAD / "capabilities.conflist")
    code, out, _ = run_cli(capsys, path, "--no-exec", f"--cni-path={REAL_CNI}")
    assert code == 1
    assert "\033[" not in out
    assert out.splitlines()[0] == path
    assert re.search(
        r"^  error   CV044 plugins\[2\]\.capabilities \(line 21\): capabilities is an array",
        out,
        re.M,
    )
    assert out.splitlines()[-1] == "1 file checked: 2 errors, 0 warnings, 0 infos"
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert "\033[31merror" in run_cli(capsys, path, "--no-exec")[1]
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\033[" not in run_cli(capsys, path, "--no-exec")[1]


def test_every_code_is_documented() -> None:
    text = DOCS.read_text()
    for code, (severity, _) in CODES.items():
        assert re.search(rf"^\| `{code}` \| {severity} \|", text, re.M), code
