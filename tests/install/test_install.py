"""``cnisdk install``/``uninstall`` on realistic config dirs: exact outputs, idempotence, safety."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from test_confdir import SELECTION_SCENARIOS  # tests/ is on sys.path (rootdir-style imports)

from cnisdk._confdir import primary_network
from cnisdk._discovery import get_plugin
from cnisdk._install import (
    InstallError,
    InstallSpec,
    NoPrimaryConfig,
    install,
    uninstall,
)
from cnisdk._validate import validate_paths

from .conftest import API_ENV, CONFIGS, GOLDEN, cli, service_account, snapshot, spec_for

# case -> (the primary file before, the primary file after install)
CASES = {
    "calico": ("10-calico.conflist", "10-calico.conflist"),
    "cilium": ("05-cilium.conflist", "05-cilium.conflist"),
    "flannel": ("10-flannel.conflist", "10-flannel.conflist"),
    "bridge": ("10-mynet.conf", "10-mynet.conflist"),
    "broken": ("10-flannel.conflist", "10-flannel.conflist"),
}
ConfCopy = Callable[[str], Path]


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
    # Every file as it was, byte for byte: a converted .conf comes back under its own name.
    assert snapshot(conf_dir) == before
    assert (conf_dir / before_name).stat().st_mode & 0o777 == 0o640
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


def test_kubeconfig_from_serviceaccount(conf_copy: ConfCopy, tmp_path: Path) -> None:
    conf_dir = conf_copy("cilium")
    sa = service_account(tmp_path / "sa")
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
    sa = service_account(tmp_path / "sa", "t")
    env = API_ENV
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


@pytest.mark.parametrize("scenario", sorted(SELECTION_SCENARIOS))
def test_install_chains_into_the_file_a_runtime_uses(scenario: str, tmp_path: Path) -> None:
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    expected = SELECTION_SCENARIOS[scenario](conf_dir)
    picked, _ = primary_network(conf_dir)
    assert picked.name == expected
    as_list = conf_dir / (expected[: expected.rfind(".")] + ".conflist")
    if picked != as_list and as_list.exists():
        # The .conf cannot become its .conflist without overwriting another file: refused.
        before = snapshot(conf_dir)
        with pytest.raises(InstallError, match="exists with other content"):
            install(spec_for(conf_dir, tmp_path / "bin"))
        assert snapshot(conf_dir) == before
        return
    outcome = install(spec_for(conf_dir, tmp_path / "bin"))
    # A .conf becomes its .conflist; either way the runtime now runs our entry, last.
    path, network = primary_network(conf_dir)
    assert outcome.config == path
    assert path in (picked, as_list)
    assert network.plugins[-1] == {"type": "passthrough", "note": "chained by cnisdk"}


def test_a_latin1_conflist_is_chained_into_and_its_bytes_kept(tmp_path: Path) -> None:
    # Go decodes the é byte as U+FFFD and loads the file: it is the one the runtime uses.
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    latin1 = (
        b'{\n  "cniVersion": "1.0.0",\n  "name": "l",\n'
        b'  "plugins": [\n    {"type": "bridge", "d": "caf\xe9"}\n  ]\n}\n'
    )
    (conf_dir / "10-latin1.conflist").write_bytes(latin1)
    (conf_dir / "20-utf8.conflist").write_bytes(latin1.replace(b"\xe9", b"e"))
    spec = spec_for(conf_dir, tmp_path / "bin")
    assert install(spec).config == conf_dir / "10-latin1.conflist"
    installed = (conf_dir / "10-latin1.conflist").read_bytes()
    assert b'"d": "caf\xe9"}' in installed and b"passthrough" in installed
    assert (conf_dir / "20-utf8.conflist").read_bytes() == latin1.replace(b"\xe9", b"e")
    uninstall(spec)
    assert (conf_dir / "10-latin1.conflist").read_bytes() == latin1


def test_declared_capabilities_go_into_the_entry(conf_copy: ConfCopy, tmp_path: Path) -> None:
    conf_dir = conf_copy("flannel")
    spec = InstallSpec(
        plugins=[get_plugin("istio-redirect")],
        bin_dir=tmp_path / "bin",
        conf_dir=conf_dir,
        entries=[{"type": "istio-redirect", "exclude_namespaces": ["kube-system"]}],
    )
    install(spec)
    entry = json.loads((conf_dir / "10-flannel.conflist").read_bytes())["plugins"][-1]
    assert entry == {
        "type": "istio-redirect",
        "exclude_namespaces": ["kube-system"],
        "capabilities": {"io.kubernetes.cri.pod-annotations": True},
    }
    # An entry that sets capabilities itself keeps them as given.
    spec.entries = [{"type": "istio-redirect", "capabilities": {}}]
    install(spec)
    entry = json.loads((conf_dir / "10-flannel.conflist").read_bytes())["plugins"][-1]
    assert entry == {"type": "istio-redirect", "capabilities": {}}
    uninstall(spec)
    assert snapshot(conf_dir) == snapshot(CONFIGS / "flannel")
