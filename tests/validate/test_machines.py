"""Machines without the plugins: --no-exec runs nothing but looks binaries up, --config-only
checks configs alone, and a cnisdk plugin installed in Python counts as present. The reference
page, the CI how-to and ``--help`` say the same thing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cnisdk._cli import main

from .conftest import CORPUS, write_plugin

DOCS = Path(__file__).parents[2] / "docs"
GOOD = CORPUS / "good"
BAD = CORPUS / "bad"


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object]]:
    code = main(["validate", "--output", "json", *argv])
    return code, json.loads(capsys.readouterr().out)


def codes(doc: dict[str, object]) -> set[str]:
    return {f["code"] for r in doc["files"] for f in r["findings"]}  # type: ignore[attr-defined,index]


def test_ci_machine_without_binaries(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A CI machine: an empty CNI path and no $CNI_PATH, only the Python distributions.
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.delenv("CNI_PATH", raising=False)
    argv = ["--strict", "--config-only", f"--cni-path={empty}"]
    code, doc = run_json(capsys, *argv, *map(str, sorted(GOOD.iterdir())))
    assert (code, doc["valid"]) == (0, True)
    assert not codes(doc) & {"CV200", "CV201", "CV202", "CV204", "CV205"}
    # The same configs without --config-only: every binary is missing (istio-redirect, a cnisdk
    # plugin installed in Python, only gets a note).
    code, doc = run_json(capsys, f"--cni-path={empty}", str(GOOD / "30-istio-redirect.conflist"))
    assert code == 1
    found = {(f["code"], f["location"]) for f in doc["files"][0]["findings"]}  # type: ignore[index]
    assert ("CV200", "plugins[0].type") in found
    assert ("CV205", "plugins[2].type") in found
    # Configs are still checked against the models.
    code, doc = run_json(capsys, *argv, str(BAD / "ref-host-local-outside.conflist"))
    assert code == 1
    assert codes(doc) == {"CV311"}


def test_config_only_knows_versions_from_the_release(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "net.conflist"
    path.write_text(json.dumps({"cniVersion": "1.1.0", "name": "n", "plugins": [
        {"type": "bridge", "ipam": {"type": "host-local", "subnet": "10.1.0.0/16"}},
        {"type": "passthrough"}]}))  # fmt: skip
    assert main(["validate", "--config-only", str(path)]) == 0
    capsys.readouterr()  # the release is not named: its plugins' versions are not assumed
    code, doc = run_json(capsys, "--config-only", "--plugins-release", "1.1.1", str(path))
    assert code == 1
    found = [(f["code"], f["location"]) for f in doc["files"][0]["findings"]]  # type: ignore[index]
    assert found == [("CV203", "plugins[0].type"), ("CV203", "plugins[0].ipam.type")]
    assert main(["validate", "--config-only", "--plugins-release", "1.6.0", str(path)]) == 0
    capsys.readouterr()


def test_no_exec_runs_nothing_but_looks_binaries_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "ran"
    write_plugin(tmp_path, "fake", f"touch {marker}; exit 1")
    path = tmp_path / "net.conflist"
    path.write_text(json.dumps({"cniVersion": "1.0.0", "name": "n", "plugins": [
        {"type": "fake"}, {"type": "missing"}]}))  # fmt: skip
    for option in ("--no-exec", "--config-only"):
        _, doc = run_json(capsys, option, f"--cni-path={tmp_path}", str(path))
        found = {(f["code"], f["location"]) for f in doc["files"][0]["findings"]}  # type: ignore[index]
        missing = ("CV200", "plugins[1].type") in found
        assert missing == (option == "--no-exec")
    assert not marker.exists()
    assert main(["validate", f"--cni-path={tmp_path}", str(path)]) == 1
    capsys.readouterr()
    assert marker.exists()


def _help() -> str:
    import argparse

    from cnisdk._commands import validate

    parser = argparse.ArgumentParser(prog="cnisdk validate")
    validate.configure(parser)
    return " ".join(parser.format_help().split())


def test_help_and_docs_say_the_same_thing() -> None:
    help_text = _help()
    reference = " ".join((DOCS / "validate.md").read_text().split())
    how_to = " ".join((DOCS / "how-to" / "validate-in-ci.md").read_text().split())
    cli = " ".join((DOCS / "reference" / "cli.md").read_text().split())
    for option in ("--no-exec", "--config-only", "--plugins-release", "--strict", "--cni-path"):
        for name, text in (("help", help_text), ("validate.md", reference), ("cli.md", cli)):
            assert option in text, (option, name)
    for name, text in (("help", help_text), ("validate.md", reference), ("how-to", how_to),
                       ("cli.md", cli)):  # fmt: skip
        lowered = text.lower()
        # --no-exec still looks binaries up; --config-only looks nothing up, for CI machines.
        assert re.search(r"--no-exec[^.]*(still|presence)", lowered), name
        assert re.search(r"--config-only[^.]*(no (plugin )?binary is looked up|looks no binary)",
                         lowered), name  # fmt: skip
        assert "counts as present" in lowered, name
    assert "--config-only" in how_to
    assert "--no-exec" in how_to
