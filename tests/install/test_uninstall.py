"""Uninstall takes out only what install added (by the install record), and puts back what
was there: entries of our type that install replaced, a symlinked primary, a converted .conf."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from cnisdk._discovery import get_plugin
from cnisdk._install import RECORD_NAME, InstallSpec, install, uninstall

from .conftest import CONFIGS, cli, install_argv, snapshot, spec_for

ConfCopy = Callable[[str], Path]
FLANNEL = CONFIGS / "flannel" / "10-flannel.conflist"


def types_in(path: Path) -> list[str]:
    return [p["type"] for p in json.loads(path.read_bytes())["plugins"]]


def with_operator_entry(source: Path, entry: bytes, index: int) -> bytes:
    """``source``'s bytes with ``entry`` spliced in as plugin ``index`` by hand."""
    text = source.read_bytes()
    anchors = [
        text.index(b'    {\n      "type": "flannel"'),
        text.index(b'    {\n      "type": "portmap"'),
    ]
    at = anchors[index] if index < len(anchors) else text.rindex(b"\n  ]")
    if index < len(anchors):
        return text[:at] + b"    " + entry + b",\n" + text[at:]
    return text[:at] + b",\n    " + entry + text[at:]


def test_an_operators_entry_of_our_type_in_another_file_stays(
    conf_copy: ConfCopy, tmp_path: Path
) -> None:
    conf_dir = conf_copy("flannel")
    other = conf_dir / "20-other.conflist"
    other.write_bytes(b'{"cniVersion":"1.0.0","name":"other","plugins":[{"type":"passthrough"}]}')
    before = snapshot(conf_dir)
    spec = spec_for(conf_dir, tmp_path / "bin")
    install(spec)
    outcome = uninstall(spec)
    assert snapshot(conf_dir) == before
    assert any(f"left the passthrough entry in {other}" in n for n in outcome.notes)
    assert not (tmp_path / "bin" / "passthrough").exists()  # the runtime does not use 20-other


def test_an_entry_of_ours_that_was_there_is_restored_as_it_was(
    conf_copy: ConfCopy, tmp_path: Path
) -> None:
    conf_dir = conf_copy("flannel")
    primary = conf_dir / "10-flannel.conflist"
    original = with_operator_entry(FLANNEL, b'{"type": "passthrough", "mine": 1.0}', 1)
    primary.write_bytes(original)
    spec = spec_for(conf_dir, tmp_path / "bin")
    install(spec)
    assert types_in(primary) == ["flannel", "portmap", "passthrough"]
    assert "mine" not in json.loads(primary.read_bytes())["plugins"][-1]
    uninstall(spec)
    assert primary.read_bytes() == original


def test_after_another_writer_only_our_part_is_undone(conf_copy: ConfCopy, tmp_path: Path) -> None:
    conf_dir = conf_copy("flannel")
    primary = conf_dir / "10-flannel.conflist"
    primary.write_bytes(with_operator_entry(FLANNEL, b'{"type": "passthrough", "mine": 1.0}', 0))
    spec = spec_for(conf_dir, tmp_path / "bin")
    install(spec)
    # Someone edits the file after us: their edit stays, ours goes, theirs comes back.
    edited = primary.read_bytes().replace(b'"hairpinMode": true', b'"hairpinMode": false')
    primary.write_bytes(edited)
    uninstall(spec)
    doc = json.loads(primary.read_bytes())
    assert [p["type"] for p in doc["plugins"]] == ["passthrough", "flannel", "portmap"]
    assert doc["plugins"][0] == {"type": "passthrough", "mine": 1.0}
    assert doc["plugins"][1]["delegate"]["hairpinMode"] is False
    assert b'"mine": 1.0' in primary.read_bytes()  # its own bytes, not re-encoded


def test_a_rewrite_that_dropped_our_entry_is_left_alone(
    conf_copy: ConfCopy, tmp_path: Path
) -> None:
    conf_dir = conf_copy("flannel")
    primary = conf_dir / "10-flannel.conflist"
    primary.write_bytes(with_operator_entry(FLANNEL, b'{"type": "passthrough", "mine": 1.0}', 2))
    spec = spec_for(conf_dir, tmp_path / "bin")
    install(spec)
    # The primary CNI writes its own file again: neither our entry nor the operator's.
    shutil.copy(FLANNEL, primary)
    outcome = uninstall(spec)
    assert primary.read_bytes() == FLANNEL.read_bytes()
    assert str(primary) not in outcome.configs


def test_the_record_survives_the_process(conf_copy: ConfCopy, tmp_path: Path) -> None:
    conf_dir = conf_copy("calico")
    before = snapshot(conf_dir)
    done = cli(*install_argv(tmp_path / "bin", conf_dir)[3:])
    assert done.returncode == 0, done.stderr
    record = conf_dir / RECORD_NAME
    assert record.stat().st_mode & 0o777 == 0o600
    assert "10-calico.conflist" in json.loads(record.read_bytes())["files"]
    done = cli(
        "uninstall", "passthrough", "--bin-dir", str(tmp_path / "bin"), "--conf-dir", str(conf_dir)
    )
    assert done.returncode == 0, done.stderr
    assert snapshot(conf_dir) == before
    assert not record.exists()  # nothing left to remember


def test_without_a_record_nothing_is_taken_out_and_the_launcher_stays(
    conf_copy: ConfCopy, tmp_path: Path
) -> None:
    conf_dir = conf_copy("calico")
    spec = spec_for(conf_dir, tmp_path / "bin")
    install(spec)
    (conf_dir / RECORD_NAME).unlink()
    installed = snapshot(conf_dir)
    outcome = uninstall(spec)
    assert snapshot(conf_dir) == installed
    # Deleting the launcher would fail every pod the runtime starts with this config.
    assert (tmp_path / "bin" / "passthrough").exists()
    assert any("did not add it" in n for n in outcome.notes)
    assert any("kept the passthrough launcher" in n for n in outcome.notes)


def test_a_broken_record_is_named_and_ignored(conf_copy: ConfCopy, tmp_path: Path) -> None:
    conf_dir = conf_copy("cilium")
    (conf_dir / RECORD_NAME).write_bytes(b'{"version": 1, "files": {"../x": 5}}')
    spec = spec_for(conf_dir, tmp_path / "bin")
    outcome = install(spec)
    assert any("ignoring the install record" in n for n in outcome.notes)
    uninstall(spec)  # the new record replaced the broken one
    assert snapshot(conf_dir) == snapshot(CONFIGS / "cilium")


def test_a_symlinked_primary_becomes_a_file_and_the_link_comes_back(
    conf_copy: ConfCopy, tmp_path: Path
) -> None:
    conf_dir = conf_copy("empty")
    managed = tmp_path / "managed" / "flannel.conflist"  # e.g. owned by a config manager
    managed.parent.mkdir()
    shutil.copy(FLANNEL, managed)
    os.chmod(managed, 0o640)
    link = conf_dir / "10-flannel.conflist"
    link.symlink_to(managed)
    spec = spec_for(conf_dir, tmp_path / "bin")
    install(spec)
    assert not link.is_symlink() and types_in(link)[-1] == "passthrough"
    assert link.stat().st_mode & 0o777 == 0o640
    assert managed.read_bytes() == FLANNEL.read_bytes()  # never written through
    uninstall(spec)
    assert link.is_symlink() and os.readlink(link) == str(managed)
    assert managed.read_bytes() == FLANNEL.read_bytes()


def test_a_symlinked_conf_is_converted_and_comes_back(conf_copy: ConfCopy, tmp_path: Path) -> None:
    conf_dir = conf_copy("empty")
    (conf_dir / "real").mkdir()
    shutil.copy(CONFIGS / "bridge" / "10-mynet.conf", conf_dir / "real" / "mynet.json")
    (conf_dir / "10-mynet.conf").symlink_to("real/mynet.json")
    spec = spec_for(conf_dir, tmp_path / "bin")
    install(spec)
    assert sorted(p.name for p in conf_dir.iterdir() if not p.name.startswith(".")) == [
        "10-mynet.conflist",
        "real",
    ]
    uninstall(spec)
    assert os.readlink(conf_dir / "10-mynet.conf") == "real/mynet.json"
    assert not (conf_dir / "10-mynet.conflist").exists()


def test_two_types_installed_separately_come_out_separately(
    conf_copy: ConfCopy, tmp_path: Path
) -> None:
    conf_dir = conf_copy("calico")
    before = snapshot(conf_dir)
    first = spec_for(conf_dir, tmp_path / "bin")
    second = InstallSpec(
        plugins=[get_plugin("tuning-example")], bin_dir=tmp_path / "bin", conf_dir=conf_dir
    )
    install(first)
    install(second)
    primary = conf_dir / "10-calico.conflist"
    assert types_in(primary)[-2:] == ["passthrough", "tuning-example"]
    uninstall(first)
    assert types_in(primary)[-1] == "tuning-example" and "passthrough" not in types_in(primary)
    uninstall(second)
    assert snapshot(conf_dir) == before
