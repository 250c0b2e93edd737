"""Other writers at the worst moment: no lost update, changes of shape, installers racing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cnisdk._discovery import get_plugin
from cnisdk._install import InstallError, InstallRecord, InstallSpec, uninstall
from cnisdk._install.chain import MAX_ATTEMPTS, chain_into, conf_dir_locked
from cnisdk._install.spec import Outcome

from .conftest import CONFIGS, GOLDEN, cli, install_argv, run_together, snapshot, started

ConfCopy = Callable[[str], Path]
FLANNEL = CONFIGS / "flannel" / "10-flannel.conflist"
# What the primary CNI's agent writes meanwhile: its own config with a new setting.
REWRITTEN = FLANNEL.read_bytes().replace(b'"hairpinMode": true', b'"hairpinMode": false')


def replace_file(path: Path, data: bytes) -> None:
    """Write as most tools do: a new file renamed over the old one."""
    tmp = path.with_name(f".{path.name}.other-writer")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def chain(conf_dir: Path, pause: Callable[[], None]) -> Outcome:
    """Chain ENTRY into ``conf_dir`` with ``pause`` run just before each rename's check."""
    outcome = Outcome()
    with conf_dir_locked(conf_dir):
        record, _ = InstallRecord.load(conf_dir)
        chain_into(conf_dir, [{"type": "passthrough", "note": "n"}], record, outcome, pause)
    return outcome


def plugins(path: Path) -> list[dict[str, object]]:
    return list(json.loads(path.read_bytes())["plugins"])


@pytest.mark.parametrize("how", ["renamed over", "rewritten in place"])
def test_a_write_between_read_and_rename_is_not_lost(how: str, conf_copy: ConfCopy) -> None:
    conf_dir = conf_copy("flannel")
    primary = conf_dir / "10-flannel.conflist"
    calls = []

    def other_writer() -> None:
        calls.append(1)
        if len(calls) == 1:
            if how == "renamed over":
                replace_file(primary, REWRITTEN)
            else:
                primary.write_bytes(REWRITTEN)  # same inode, new bytes

    chain(conf_dir, other_writer)
    assert len(calls) == 2  # the first edit was dropped and done again
    doc = plugins(primary)
    assert doc[0]["delegate"]["hairpinMode"] is False  # theirs kept
    assert doc[-1] == {"type": "passthrough", "note": "n"}  # ours added


def test_a_primary_that_changes_shape_meanwhile(conf_copy: ConfCopy) -> None:
    conf_dir = conf_copy("flannel")
    calls = []

    def other_writer() -> None:
        calls.append(1)
        if len(calls) == 1:  # the conflist is replaced by a single-plugin .conf
            (conf_dir / "10-flannel.conflist").unlink()
            shutil.copy(CONFIGS / "bridge" / "10-mynet.conf", conf_dir / "05-mynet.conf")

    outcome = chain(conf_dir, other_writer)
    assert outcome.config == conf_dir / "05-mynet.conflist"
    assert sorted(snapshot(conf_dir)) == ["05-mynet.conflist"]
    assert [p["type"] for p in plugins(conf_dir / "05-mynet.conflist")] == ["bridge", "passthrough"]


def test_a_conf_rewritten_while_converting_leaves_no_stale_conflist(conf_copy: ConfCopy) -> None:
    conf_dir = conf_copy("bridge")
    conf = conf_dir / "10-mynet.conf"
    newer = conf.read_bytes().replace(b'"cni0"', b'"cni1"')
    calls = []

    def other_writer() -> None:
        calls.append(1)
        if len(calls) == 1:
            replace_file(conf, newer)

    chain(conf_dir, other_writer)
    doc = json.loads((conf_dir / "10-mynet.conflist").read_bytes())
    assert doc["plugins"][0]["bridge"] == "cni1"
    assert sorted(snapshot(conf_dir)) == ["10-mynet.conflist"]


def test_a_config_that_never_stops_changing_fails_after_bounded_tries(
    conf_copy: ConfCopy,
) -> None:
    conf_dir = conf_copy("flannel")
    primary = conf_dir / "10-flannel.conflist"
    calls = []

    def fighter() -> None:
        calls.append(1)
        replace_file(primary, FLANNEL.read_bytes() + b" " * len(calls))

    with pytest.raises(InstallError, match=f"kept changing .*{MAX_ATTEMPTS} tries"):
        chain(conf_dir, fighter)
    assert len(calls) == MAX_ATTEMPTS
    assert all(p["type"] != "passthrough" for p in plugins(primary))
    assert not list(conf_dir.glob(".*.cnisdk-tmp"))


def test_a_real_writer_during_a_paused_install(conf_copy: ConfCopy, tmp_path: Path) -> None:
    """Another process renames a new primary in while the installer is between its write
    and its rename (held there by the test pause): its update survives, ours is added."""
    conf_dir = conf_copy("flannel")
    primary = conf_dir / "10-flannel.conflist"
    argv = install_argv(tmp_path / "bin", conf_dir)
    with started(argv, {**os.environ, "CNISDK_INSTALL_TEST_PAUSE": "2"}) as proc:
        deadline = time.monotonic() + 30
        while not list(conf_dir.glob(".10-flannel.conflist.*.cnisdk-tmp")):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.01)
        replace_file(primary, REWRITTEN)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    doc = plugins(primary)
    assert doc[0]["delegate"]["hairpinMode"] is False
    assert doc[-1] == {"type": "passthrough", "note": "chained by cnisdk"}
    uninstall(
        InstallSpec(
            plugins=[get_plugin("passthrough")], bin_dir=tmp_path / "bin", conf_dir=conf_dir
        )
    )
    assert primary.read_bytes() == REWRITTEN


def test_two_installers_racing(conf_copy: ConfCopy, tmp_path: Path) -> None:
    conf_dir = conf_copy("calico")
    argv = install_argv(tmp_path / "bin", conf_dir)
    results = run_together([argv, argv], {**os.environ, "CNISDK_INSTALL_TEST_PAUSE": "0.3"})
    assert [code for code, _, _ in results] == [0, 0], results
    states = sorted(out.splitlines()[-1].split(":")[1].split()[0] for _, out, _ in results)
    assert states == ["already", "chained"]  # the lock made the second one see the first
    assert (conf_dir / "10-calico.conflist").read_bytes() == (
        GOLDEN / "calico.installed"
    ).read_bytes()


def test_installers_of_two_types_at_once(conf_copy: ConfCopy, tmp_path: Path) -> None:
    conf_dir = conf_copy("cilium")
    tuning = [sys.executable, "-m", "cnisdk._cli", "install", "tuning-example"]
    argvs = [
        install_argv(tmp_path / "bin", conf_dir),
        [*tuning, "--bin-dir", str(tmp_path / "bin"), "--conf-dir", str(conf_dir)],
    ]
    results = run_together(argvs, {**os.environ, "CNISDK_INSTALL_TEST_PAUSE": "0.2"})
    assert [code for code, _, _ in results] == [0, 0], results
    types = [p["type"] for p in plugins(conf_dir / "05-cilium.conflist")]
    assert sorted(types[1:]) == ["passthrough", "tuning-example"]
    for kind in ("passthrough", "tuning-example"):
        done = cli(
            "uninstall", kind, "--bin-dir", str(tmp_path / "bin"), "--conf-dir", str(conf_dir)
        )
        assert done.returncode == 0, done.stderr
    assert snapshot(conf_dir) == snapshot(CONFIGS / "cilium")


@pytest.mark.parametrize("case", ["calico", "bridge"])
def test_killed_mid_write_leaves_old_or_new(case: str, conf_copy: ConfCopy, tmp_path: Path) -> None:
    conf_dir = conf_copy(case)
    before = snapshot(conf_dir)
    argv = install_argv(tmp_path / "bin", conf_dir)
    env = {**os.environ, "CNISDK_INSTALL_TEST_PAUSE": "30"}
    with started(argv, env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        deadline = time.monotonic() + 30
        while not [
            p for p in conf_dir.glob(".*.cnisdk-tmp") if not p.name.startswith(".cnisdk-install")
        ]:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    # The temp file was never renamed: the config is the old one.
    assert snapshot(conf_dir) == before
    # A re-run clears the orphan and installs.
    done = cli(*install_argv(tmp_path / "bin", conf_dir)[3:])
    assert done.returncode == 0, done.stderr
    assert not list(conf_dir.glob(".*.cnisdk-tmp"))
    after = "10-mynet.conflist" if case == "bridge" else "10-calico.conflist"
    assert (conf_dir / after).read_bytes() == (GOLDEN / f"{case}.installed").read_bytes()
