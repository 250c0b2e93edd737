"""Hostile and broken input on the node: the conf dir's files, the conf dir itself, the
install record, the service account. Each gets a clear error or is passed over with a
reason; nothing hangs, nothing reads without bound, no traceback, no secret in a message."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cnisdk._discovery import get_plugin
from cnisdk._install import (
    LOCK_NAME,
    RECORD_NAME,
    InstallError,
    install,
    out_of_place,
    uninstall,
)
from cnisdk._launcher import AgentEntry

from .conftest import (
    API_ENV,
    CA_PEM,
    CONFIGS,
    cli,
    install_argv,
    service_account,
    snapshot,
    spec_for,
)

ConfCopy = Callable[[str], Path]
SECRET = "eyJzZWNyZXQtdG9rZW4tY29udGVudA"  # stands for a token's content


def test_files_a_runtime_cannot_read_are_passed_over_quickly(
    conf_copy: ConfCopy, tmp_path: Path
) -> None:
    conf_dir = conf_copy("flannel")
    with open(conf_dir / "00-huge.conflist", "wb") as huge:  # sparse: 2 GiB, no disk
        huge.truncate(2 << 30)
    os.mkfifo(conf_dir / "01-fifo.conflist")  # reading it would block forever
    (conf_dir / "02-dir.conflist").mkdir()
    (conf_dir / "03-loop.conflist").symlink_to("04-loop.conflist")
    (conf_dir / "04-loop.conflist").symlink_to("03-loop.conflist")
    (conf_dir / "05-dangling.conf").symlink_to("/nonexistent/x.conf")
    (conf_dir / "06-devzero.conf").symlink_to("/dev/zero")
    (conf_dir / "07-binary.conflist").write_bytes(os.urandom(4096))
    start = time.monotonic()
    outcome = install(spec_for(conf_dir, tmp_path / "bin"))
    assert time.monotonic() - start < 10
    assert outcome.config == conf_dir / "10-flannel.conflist"
    notes = "\n".join(outcome.notes)
    for name in ("00-huge", "01-fifo", "03-loop", "05-dangling", "06-devzero", "07-binary"):
        assert name in notes
    assert "larger than" in notes and "FIFO" in notes


def test_a_conf_dir_that_is_a_symlink_loop(tmp_path: Path) -> None:
    conf_dir = tmp_path / "net.d"
    conf_dir.symlink_to(tmp_path / "net.d")
    with pytest.raises(InstallError, match="is a symlink loop"):
        install(spec_for(conf_dir, tmp_path / "bin"))
    done = cli(*install_argv(tmp_path / "bin", conf_dir)[3:])
    assert done.returncode == 1 and "symlink loop" in done.stderr
    assert "Traceback" not in done.stderr
    done = cli(
        "uninstall", "passthrough", "--bin-dir", str(tmp_path / "bin"), "--conf-dir", str(conf_dir)
    )
    assert done.returncode == 1 and "symlink loop" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_conf_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "net.d").write_text("{}")
    with pytest.raises(InstallError, match="is not a directory"):
        install(spec_for(tmp_path / "net.d", tmp_path / "bin"))


def test_a_primary_nested_deeper_than_we_can_read_fails_closed(tmp_path: Path) -> None:
    # Go reads it (its limit is 10000 levels), so skipping it would chain us into a file the
    # runtime does not use: refused instead.
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    deep = b"[" * 9000 + b"]" * 9000
    (conf_dir / "10-deep.conflist").write_bytes(
        b'{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge","x":' + deep + b"}]}"
    )
    (conf_dir / "20-plain.conflist").write_bytes(
        (CONFIGS / "flannel" / "10-flannel.conflist").read_bytes()
    )
    before = snapshot(conf_dir)
    done = cli(*install_argv(tmp_path / "bin", conf_dir)[3:])
    assert done.returncode == 1 and "nested too deeply" in done.stderr
    assert "Traceback" not in done.stderr
    assert snapshot(conf_dir) == before


def test_a_lock_file_that_is_a_symlink_is_refused(conf_copy: ConfCopy, tmp_path: Path) -> None:
    conf_dir = conf_copy("flannel")
    (conf_dir / LOCK_NAME).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InstallError, match="cannot lock"):
        install(spec_for(conf_dir, tmp_path / "bin"))
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("kind", ["fifo", "huge", "garbage", "dir"])
def test_a_broken_record_is_named_and_passed_over(
    kind: str, conf_copy: ConfCopy, tmp_path: Path
) -> None:
    conf_dir = conf_copy("flannel")
    record = conf_dir / RECORD_NAME
    if kind == "fifo":
        os.mkfifo(record)
    elif kind == "huge":
        with open(record, "wb") as handle:
            handle.truncate(1 << 30)
    elif kind == "garbage":
        record.write_bytes(b"\x00\xff" * 100)
    else:
        record.mkdir()
    spec = spec_for(conf_dir, tmp_path / "bin")
    start = time.monotonic()
    if kind == "dir":  # cannot be replaced by a file: the install says so
        with pytest.raises(InstallError, match=RECORD_NAME):
            install(spec)
        return
    outcome = install(spec)
    assert time.monotonic() - start < 10
    assert any("ignoring the install record" in n for n in outcome.notes)
    uninstall(spec)
    assert snapshot(conf_dir) == snapshot(CONFIGS / "flannel")


def sa_with(tmp_path: Path, token: bytes | None = None, ca: bytes | None = None) -> Path:
    sa = service_account(tmp_path / "sa")
    if token is not None:
        (sa / "token").write_bytes(token)
    if ca is not None:
        (sa / "ca.crt").write_bytes(ca)
    return sa


def broken_service_accounts(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """case -> (service account dir, what the message must say)."""
    cases: dict[str, tuple[Path, str]] = {}

    def case(name: str, message: str, **files: bytes) -> Path:
        sa = service_account(tmp_path / name, SECRET)
        for file, data in files.items():
            (sa / file.replace("_", ".")).write_bytes(data)
        cases[name] = (sa, message)
        return sa

    case("spaces", "not a bearer token", token=f"Bearer {SECRET}\n".encode())
    case("newline", "not a bearer token", token=f"{SECRET}\nkubeconfig: {SECRET}".encode())
    case("binary", "not a bearer token", token=SECRET.encode() + b"\xff\x00")
    case("empty", "is empty", token=b"  \n")
    case("huge", "larger than", token=SECRET.encode() * 10000)
    case("ca-not-pem", "holds no PEM certificate", ca_crt=f"token: {SECRET}".encode())
    sa = case("token-fifo", "FIFO")
    (sa / "token").unlink()
    os.mkfifo(sa / "token")
    sa = case("token-dir", "directory")
    (sa / "token").unlink()
    (sa / "token").mkdir()
    sa = case("token-loop", "symlink loop")
    (sa / "token").unlink()
    (sa / "token").symlink_to(sa / "token")
    sa = case("ca-missing", "No such file")
    (sa / "ca.crt").unlink()
    return cases


def test_a_broken_service_account_is_named_never_quoted(
    conf_copy: ConfCopy, tmp_path: Path
) -> None:
    conf_dir = conf_copy("cilium")
    for name, (sa, message) in broken_service_accounts(tmp_path).items():
        spec = spec_for(conf_dir, tmp_path / "bin", serviceaccount_dir=sa, environ=API_ENV)
        with pytest.raises(InstallError) as info:
            install(spec)
        assert message in str(info.value), name
        assert str(sa) in str(info.value), name
        assert SECRET not in str(info.value), name
        done = cli(
            *install_argv(tmp_path / "bin", conf_dir, "--kubeconfig-from-serviceaccount", str(sa))[
                3:
            ],
            env=API_ENV,
        )
        assert done.returncode == 1, name
        assert SECRET not in done.stdout + done.stderr, name
        assert "Traceback" not in done.stderr, name
    # Nothing was chained without its kubeconfig.
    assert snapshot(conf_dir) == snapshot(CONFIGS / "cilium")


@pytest.mark.parametrize(
    "env, message",
    [
        ({"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, "must be set"),
        ({"KUBERNETES_SERVICE_HOST": "evil/x?", "KUBERNETES_SERVICE_PORT": "443"}, "not a host"),
        ({"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "0x1"}, "not a port"),
    ],
)
def test_a_broken_api_address_is_refused(
    env: dict[str, str], message: str, conf_copy: ConfCopy, tmp_path: Path
) -> None:
    spec = spec_for(
        conf_copy("cilium"), tmp_path / "bin", serviceaccount_dir=sa_with(tmp_path), environ=env
    )
    with pytest.raises(InstallError, match=message):
        install(spec)


def test_the_kubeconfig_is_written_0600_and_only_named(conf_copy: ConfCopy, tmp_path: Path) -> None:
    conf_dir = conf_copy("cilium")
    sa = sa_with(tmp_path, token=SECRET.encode() + b"\n", ca=CA_PEM)
    done = cli(
        *install_argv(tmp_path / "bin", conf_dir, "--kubeconfig-from-serviceaccount", str(sa))[3:],
        env=API_ENV,
    )
    assert done.returncode == 0, done.stderr
    kubeconfig = conf_dir / "ZZZ-passthrough-kubeconfig"
    assert kubeconfig.stat().st_mode & 0o777 == 0o600
    assert json.loads(kubeconfig.read_bytes())["users"][0]["user"]["token"] == SECRET
    assert SECRET not in done.stdout + done.stderr
    assert SECRET not in (conf_dir / "05-cilium.conflist").read_text()


def test_a_shim_binary_that_is_not_one_fails_install_and_the_watch_check_alike(
    tmp_path: Path,
) -> None:
    # --watch checks what is out of place before it writes: that check must fail the same
    # clean way as the install itself, never with a bare ValueError that ends the loop.
    not_a_shim = tmp_path / "not-a-shim"
    not_a_shim.write_bytes(b"#!/bin/sh\n")
    entry = AgentEntry.of(get_plugin("passthrough"), "/run/a.sock", shim_binary=str(not_a_shim))
    spec = spec_for(None, tmp_path / "bin")
    spec.plugins = [entry]
    for attempt in (install, out_of_place):
        with pytest.raises(InstallError, match=f"cannot write launchers into {tmp_path}/bin: "):
            attempt(spec)
