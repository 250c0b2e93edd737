"""``cnisdk install``/``uninstall`` on realistic config dirs: exact outputs, idempotence, safety."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from cnisdk._discovery import get_plugin
from cnisdk._node_install import (
    InstallError,
    InstallSpec,
    NoPrimaryConfig,
    add_entries,
    install,
    remove_entries,
    uninstall,
)
from cnisdk._validate import validate_paths

from .conftest import CONFIGS, ENTRY, GOLDEN, cli, install_argv, snapshot

# case -> (the primary file before, the primary file after install)
CASES = {
    "calico": ("10-calico.conflist", "10-calico.conflist"),
    "cilium": ("05-cilium.conflist", "05-cilium.conflist"),
    "flannel": ("10-flannel.conflist", "10-flannel.conflist"),
    "bridge": ("10-mynet.conf", "10-mynet.conflist"),
    "broken": ("10-flannel.conflist", "10-flannel.conflist"),
}
ConfCopy = Callable[[str], Path]


def spec_for(conf_dir: Path | None, bin_dir: Path, **kwargs: object) -> InstallSpec:
    return InstallSpec(
        plugins=[get_plugin("passthrough")],
        bin_dir=bin_dir,
        conf_dir=conf_dir,
        entries=[ENTRY],
        **kwargs,  # type: ignore[arg-type]
    )


def golden(name: str, actual: bytes) -> bytes:
    path = GOLDEN / name
    if os.environ.get("CNISDK_UPDATE_GOLDEN"):
        path.write_bytes(actual)
    return path.read_bytes()


@pytest.mark.parametrize("case", sorted(CASES))
def test_install_and_uninstall_exact(case: str, conf_copy: ConfCopy, tmp_path: Path) -> None:
    conf_dir = conf_copy(case)
    before_name, after_name = CASES[case]
    before = snapshot(conf_dir)
    os.chmod(conf_dir / before_name, 0o640)
    spec = spec_for(conf_dir, tmp_path / "bin")

    outcome = install(spec)
    after = snapshot(conf_dir)
    assert after[after_name] == golden(f"{case}.installed", after[after_name])
    assert outcome.config == conf_dir / after_name
    assert (conf_dir / after_name).stat().st_mode & 0o777 == 0o640  # the file's mode is kept
    # Every other file is untouched (broken ones included); a .conf became its .conflist.
    others = {k: v for k, v in after.items() if k != after_name}
    assert others == {k: v for k, v in before.items() if k not in (before_name, after_name)}
    doc = json.loads(after[after_name])
    assert [p["type"] for p in doc["plugins"]].count("passthrough") == 1
    assert doc["plugins"][-1] == {"type": "passthrough", "note": "chained by cnisdk"}

    # Idempotent: nothing written the second time (same inode, same bytes).
    inode = (conf_dir / after_name).stat().st_ino
    assert install(spec).changed == []
    assert (conf_dir / after_name).stat().st_ino == inode
    assert snapshot(conf_dir) == after

    removed = uninstall(spec)
    assert str(conf_dir / after_name) in removed.changed
    assert not (tmp_path / "bin" / "passthrough").exists()
    final = snapshot(conf_dir)
    if before_name == after_name:  # a conflist gets its original bytes back
        assert final == before
    else:  # a converted .conf stays a conflist (as with Istio), minus our entry
        assert final[after_name] == golden(f"{case}.uninstalled", final[after_name])
        assert uninstall(spec).changed == []


def test_reinstall_replaces_an_old_entry_in_place(conf_copy: ConfCopy, tmp_path: Path) -> None:
    conf_dir = conf_copy("calico")
    install(spec_for(conf_dir, tmp_path / "bin"))
    newer = spec_for(conf_dir, tmp_path / "bin")
    newer.entries = [{"type": "passthrough", "note": "v2"}]
    install(newer)
    doc = json.loads((conf_dir / "10-calico.conflist").read_bytes())
    assert [p["type"] for p in doc["plugins"]] == ["calico", "portmap", "bandwidth", "passthrough"]
    assert doc["plugins"][-1]["note"] == "v2"
    uninstall(newer)
    assert (conf_dir / "10-calico.conflist").read_bytes() == (
        CONFIGS / "calico" / "10-calico.conflist"
    ).read_bytes()


def test_our_entry_not_last_is_moved_last(tmp_path: Path) -> None:
    text = json.dumps(
        {"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "passthrough"}, {"type": "a"}]},
        indent=4,
    )
    new = add_entries(text, True, [{"type": "passthrough"}], ["passthrough"])
    assert [p["type"] for p in json.loads(new)["plugins"]] == ["a", "passthrough"]
    assert '\n        {\n            "type": "passthrough"\n        }\n    ]' in new


@pytest.mark.parametrize(
    "text",
    [
        '{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"a"}]}',
        '{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "a"}, {"type": "b"}]}\n',
        '{\n\t"name": "n",\n\t"plugins": [\n\t\t{"type": "a"}\n\t]\n}\n',
        '{"name":"n","plugins":[],"plugins":[{"type":"a"}]}',
        '  {"name": "n", "plugins": [ {"type": "a"} ,{"type":"b"} ] }  ',
    ],
)
def test_splice_round_trips_any_layout(text: str) -> None:
    installed = add_entries(text, True, [{"type": "x", "k": [1, 2]}], ["x"])
    assert json.loads(installed)["plugins"][-1] == {"type": "x", "k": [1, 2]}
    assert remove_entries(installed, ["x"]) == text


def test_empty_dir_fails_clearly(conf_copy: ConfCopy, tmp_path: Path) -> None:
    conf_dir = conf_copy("empty")
    with pytest.raises(NoPrimaryConfig, match="no usable CNI network config"):
        install(spec_for(conf_dir, tmp_path / "bin"))
    done = cli(
        "install", "passthrough", "--bin-dir", str(tmp_path / "bin"), "--conf-dir", str(conf_dir)
    )
    assert done.returncode == 1
    assert "no usable CNI network config" in done.stderr and "--watch" in done.stderr
    assert snapshot(conf_dir) == {}


def test_only_broken_files_names_each_reason(conf_copy: ConfCopy, tmp_path: Path) -> None:
    conf_dir = conf_copy("broken")
    (conf_dir / "10-flannel.conflist").unlink()
    with pytest.raises(NoPrimaryConfig) as info:
        install(spec_for(conf_dir, tmp_path / "bin"))
    for name in ("00-truncated.conflist", "01-no-plugins.conflist", "02-no-type.conf"):
        assert name in str(info.value)


def test_conf_with_a_foreign_conflist_of_the_same_name_is_refused(
    conf_copy: ConfCopy, tmp_path: Path
) -> None:
    conf_dir = conf_copy("bridge")
    (conf_dir / "10-mynet.conflist").write_text(
        '{"cniVersion":"1.0.0","name":"other","plugins":[{"type":"ptp"}]}'
    )
    before = snapshot(conf_dir)
    with pytest.raises(InstallError, match="exists with other content"):
        install(spec_for(conf_dir, tmp_path / "bin"))
    assert snapshot(conf_dir) == before


def test_rerun_after_dying_between_conflist_and_conf_removal(
    conf_copy: ConfCopy, tmp_path: Path
) -> None:
    conf_dir = conf_copy("bridge")
    spec = spec_for(conf_dir, tmp_path / "bin")
    install(spec)
    # Put back the .conf as if the run had died before removing it.
    shutil.copy(CONFIGS / "bridge" / "10-mynet.conf", conf_dir / "10-mynet.conf")
    outcome = install(spec)
    assert outcome.changed == [str(conf_dir / "10-mynet.conf")]
    assert sorted(snapshot(conf_dir)) == ["10-mynet.conflist"]
    assert (conf_dir / "10-mynet.conflist").read_bytes() == (
        GOLDEN / "bridge.installed"
    ).read_bytes()


def test_launchers_only_keeps_the_old_interface(tmp_path: Path) -> None:
    done = cli("install", "--bin-dir", str(tmp_path), "passthrough")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("installed passthrough (cnisdk_examples ")
    assert done.stdout.rstrip().endswith(f"-> {tmp_path / 'passthrough'}")
    assert os.access(tmp_path / "passthrough", os.X_OK)


def test_uninstall_keeps_a_foreign_binary(conf_copy: ConfCopy, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "passthrough").write_text("#!/bin/sh\nexit 0\n")
    outcome = uninstall(spec_for(conf_copy("flannel"), bin_dir))
    assert (bin_dir / "passthrough").exists()
    assert any("not a cnisdk launcher" in n for n in outcome.notes)


def test_two_installers_racing(conf_copy: ConfCopy, tmp_path: Path) -> None:
    conf_dir = conf_copy("calico")
    argv = install_argv(tmp_path / "bin", conf_dir)
    env = {**os.environ, "CNISDK_INSTALL_TEST_PAUSE": "0.3"}
    procs = [
        subprocess.Popen(
            argv,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=30) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    states = sorted(out.splitlines()[-1].split(":")[1].split()[0] for out, _ in results)
    assert states == ["already", "chained"]  # the lock made the second one see the first
    doc = json.loads((conf_dir / "10-calico.conflist").read_bytes())
    assert [p["type"] for p in doc["plugins"]].count("passthrough") == 1
    assert (conf_dir / "10-calico.conflist").read_bytes() == (
        GOLDEN / "calico.installed"
    ).read_bytes()


@pytest.mark.parametrize("case", ["calico", "bridge"])
def test_killed_mid_write_leaves_old_or_new(case: str, conf_copy: ConfCopy, tmp_path: Path) -> None:
    conf_dir = conf_copy(case)
    before = snapshot(conf_dir)
    proc = subprocess.Popen(
        install_argv(tmp_path / "bin", conf_dir),
        env={**os.environ, "CNISDK_INSTALL_TEST_PAUSE": "30"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while not list(conf_dir.glob(".*.cnisdk-tmp")):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # The temp file is complete but was never renamed: the config is the old one.
    assert snapshot(conf_dir) == before
    # A re-run cleans the orphan and installs.
    done = cli(
        "install",
        "passthrough",
        "--bin-dir",
        str(tmp_path / "bin"),
        "--conf-dir",
        str(conf_dir),
        "--chain",
        json.dumps(ENTRY),
    )
    assert done.returncode == 0, done.stderr
    assert not list(conf_dir.glob(".*.cnisdk-tmp"))
    _, after_name = CASES[case]
    assert (conf_dir / after_name).read_bytes() == (GOLDEN / f"{case}.installed").read_bytes()


def test_kubeconfig_from_serviceaccount(conf_copy: ConfCopy, tmp_path: Path) -> None:
    conf_dir = conf_copy("cilium")
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("token-1")
    (sa / "ca.crt").write_bytes(b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n")
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    spec = spec_for(conf_dir, tmp_path / "bin", serviceaccount_dir=sa, environ=env)
    install(spec)
    kubeconfig = conf_dir / "ZZZ-passthrough-kubeconfig"
    assert kubeconfig.stat().st_mode & 0o777 == 0o600
    doc = json.loads(kubeconfig.read_bytes())
    assert doc["clusters"][0]["cluster"]["server"] == "https://[fd00::1]:443"
    assert doc["users"][0]["user"]["token"] == "token-1"
    entry = json.loads((conf_dir / "05-cilium.conflist").read_bytes())["plugins"][-1]
    assert entry["kubeconfig"] == str(kubeconfig)
    assert install(spec).changed == []
    (sa / "token").write_text("token-2")  # rotation
    assert install(spec).changed == [str(kubeconfig)]
    assert json.loads(kubeconfig.read_bytes())["users"][0]["user"]["token"] == "token-2"
    uninstall(spec)
    assert not kubeconfig.exists()
    assert snapshot(conf_dir) == snapshot(CONFIGS / "cilium")


def test_kubeconfig_under_a_host_root(conf_copy: ConfCopy, tmp_path: Path) -> None:
    host = tmp_path / "host"
    conf_dir = host / "etc" / "cni" / "net.d"
    shutil.copytree(CONFIGS / "flannel", conf_dir)
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("t")
    (sa / "ca.crt").write_text("ca")
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    spec = spec_for(
        conf_dir, host / "opt" / "cni" / "bin", serviceaccount_dir=sa, environ=env, host_root=host
    )
    install(spec)
    entry = json.loads((conf_dir / "10-flannel.conflist").read_bytes())["plugins"][-1]
    assert entry["kubeconfig"] == "/etc/cni/net.d/ZZZ-passthrough-kubeconfig"  # the node's path
    assert (conf_dir / "ZZZ-passthrough-kubeconfig").exists()


def test_validate_passes_after_install(conf_copy: ConfCopy, tmp_path: Path) -> None:
    # The other vendors' binaries are not installed here: stand-ins (not executed: no_exec).
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name in (
        "calico",
        "calico-ipam",
        "portmap",
        "bandwidth",
        "flannel",
        "bridge",
        "host-local",
        "cilium-cni",
    ):
        (stubs / name).write_text("#!/bin/sh\nexit 1\n")
        (stubs / name).chmod(0o755)
    for case in ("calico", "bridge", "broken", "cilium", "flannel"):
        conf_dir = conf_copy(case)
        install(spec_for(conf_dir, tmp_path / "bin"))

        async def run(directory: Path = conf_dir) -> list[object]:
            return list(
                await validate_paths(
                    [str(directory)],
                    cni_path=[str(tmp_path / "bin"), str(stubs)],
                    exec_binaries=False,
                )
            )

        reports = anyio.run(run)
        primary = [r for r in reports if getattr(r, "selected", None)]
        assert len(primary) == 1
        assert str(primary[0].path).endswith(CASES[case][1])  # type: ignore[attr-defined]
        assert not [f for f in primary[0].findings if f.severity == "error"], primary[0].findings  # type: ignore[attr-defined]


def test_runtime_copied_to_the_node_and_launchers_use_it(
    conf_copy: ConfCopy, tmp_path: Path
) -> None:
    source = tmp_path / "image-python"
    (source / "bin").mkdir(parents=True)
    (source / "bin" / "python3").write_text("#!/bin/sh\n")
    host = tmp_path / "host"
    conf_dir = host / "etc" / "cni" / "net.d"
    shutil.copytree(CONFIGS / "cilium", conf_dir)
    args = [
        "install",
        "passthrough",
        "--host-root",
        str(host),
        "--runtime",
        f"{source}:/opt/cnisdk",
        "--bin-dir",
        str(host / "opt/cni/bin"),
        "--conf-dir",
        str(conf_dir),
    ]
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    current = host / "opt" / "cnisdk" / "current"
    assert (current / "bin" / "python3").read_text() == "#!/bin/sh\n"
    first = os.readlink(current)
    launcher = (host / "opt/cni/bin/passthrough").read_text()
    assert launcher.startswith("#!/opt/cnisdk/current/bin/python3 -I\n")  # a node path
    assert not cli(*args).stdout.startswith("copied ")  # unchanged tree: nothing copied
    (source / "bin" / "python3").write_text("#!/bin/sh\n# new\n")
    os.utime(source / "bin" / "python3", (1, 1))
    assert cli(*args).returncode == 0
    assert os.readlink(current) != first and (host / "opt/cnisdk" / first).is_dir()  # kept
