"""The reference plugins' models against the Go plugins themselves (Debian's, v1.1.1), and the
rules that depend on the release."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cnisdk._plugin import Plugin
from cnisdk._validate import FileReport, validate_paths
from cnisdk._validate._keys import suggest
from cnisdk._validate._reference import REFERENCE_PLUGINS, parse_release

from .conftest import CORPUS, REAL_CNI

DEBIAN = (1, 1, 1)  # Debian 12's containernetworking-plugins
# Plugins whose Go code checks its config before it needs a previous result or the node, so
# running them without one tells whether they accept the config, and touches nothing.
SAFE_META = {
    "portmap": "must be called as chained plugin",
    "bandwidth": "must be called as chained plugin",
    "tuning": "Required prevResult missing",
    "sbr": "This plugin must be called as chained plugin",
    "vrf": "missing prevResult from earlier plugin",
    "firewall": "missing prevResult from earlier plugin",
}
SAFE_IPAM = ("host-local", "static")
# Files whose mistake the Go plugin meets later than its config check: the main plugin fails
# on host-local's "<nil>" route or on no address from static; tuning checks sysctl keys in the
# container's namespace; the kernel refuses a route whose gateway is of the other family.
# firewall checks its ingress policy after setting up its rules.
LATER = {
    ("ref-host-local-route.conflist", "host-local"),
    ("ref-host-local-route-family.conflist", "host-local"),
    ("ref-static-none.conflist", "static"),
    ("ref-tuning-sysctl.conflist", "tuning"),
    ("ref-firewall-policy.conflist", "firewall"),
}
ALL_FILES = sorted(
    p for d in ("good", "bad") for p in (CORPUS / d).iterdir() if p.suffix != ".json"
)


def run_go(plugin: str, stdin: dict[str, Any], data_dir: Path) -> tuple[int, str]:
    """Run Debian's plugin with ADD; return its exit status and its message (or result)."""
    env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": f"parity{os.getpid()}",
        "CNI_NETNS": "/nonexistent",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": REAL_CNI,
    }
    done = subprocess.run(
        [f"{REAL_CNI}/{plugin}"],
        input=json.dumps(stdin).encode(),
        env=env,
        capture_output=True,
        timeout=10,
        cwd=data_dir,
        check=False,
    )
    if not done.stdout.strip() and b"panic: " in done.stderr:
        # bandwidth v1.1.1 without rates dereferences the missing previous result: past its
        # config checks.
        return done.returncode, "panic"
    out = json.loads(done.stdout)
    return done.returncode, out.get("msg", "") if done.returncode else "ok"


def _about_plugins(path: Path) -> bool:
    """Whether a corpus file's errors are all about plugin configs (not the spec's rules)."""
    if path.parent.name == "good":
        return True
    expected = json.loads((CORPUS / "bad" / "expected.json").read_text())[path.name]
    return all(code.startswith("CV3") for code, severity, _ in expected if severity == "error")


def cases() -> list[tuple[str, int, str]]:
    """(file, entry index, what to run) for every safe Go plugin entry or IPAM of the corpus
    files whose mistakes are in plugin configs."""
    out = []
    for path in filter(_about_plugins, ALL_FILES):
        try:
            doc = json.loads(path.read_text())
        except ValueError:
            continue
        plugins = doc.get("plugins") if isinstance(doc, dict) else None
        for index, entry in enumerate(plugins if isinstance(plugins, list) else []):
            if not isinstance(entry, dict):
                continue
            if entry.get("type") in SAFE_META:
                out.append((path.name, index, "entry"))
            ipam = entry.get("ipam")
            if isinstance(ipam, dict) and ipam.get("type") in SAFE_IPAM:
                out.append((path.name, index, "ipam"))
    return out


@pytest.mark.anyio
@pytest.mark.parametrize(("name", "index", "part"), cases())
async def test_errors_match_the_go_plugins(
    tmp_path: Path, stub_bin: Path, name: str, index: int, part: str
) -> None:
    path = next(p for p in ALL_FILES if p.name == name)
    doc = json.loads(path.read_text())
    entry = doc["plugins"][index]
    version = doc.get("cniVersion")
    stdin: dict[str, Any] = {
        **entry,
        "cniVersion": version if version in ("0.2.0", "0.3.1", "0.4.0") else "1.0.0",
        **({"name": doc["name"]} if "name" in doc else {}),
    }
    if part == "ipam":
        stdin["ipam"] = {**entry["ipam"], "dataDir": str(tmp_path / "ipam")}
        plugin, where = entry["ipam"]["type"], f"plugins[{index}].ipam"
    else:
        plugin, where = entry["type"], f"plugins[{index}]"
    status, message = run_go(plugin, stdin, tmp_path)
    accepted = status == 0 or message in (SAFE_META.get(plugin), "panic")
    (report,) = await validate_paths(
        [str(path)], cni_path=[], check_presence=False, plugins_release=DEBIAN
    )
    # What validate says the plugin refuses: the entry's (or the ipam's) errors.
    refused = [
        f
        for f in report.findings
        if f.severity == "error"
        and f.code.startswith("CV3")
        and (f.location.startswith(f"{where}.") or f.location == where)
        and (part == "ipam" or not f.location.startswith(f"{where}.ipam"))
    ]
    if (name, plugin) in LATER:
        assert accepted and refused, (message, refused)
        return
    assert accepted == (not refused), (message, refused)
    if refused and plugin in ("host-local", "static", "vrf"):
        # The same words as the Go plugin's.
        text = message.removeprefix("failed to load netconf: ")
        assert any(text in f.message for f in refused), (message, refused)


def test_go_plugins_are_the_release_judged() -> None:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "containernetworking-plugins"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode == 0:
        assert done.stdout.startswith(".".join(map(str, DEBIAN)))


# --------------------------------------------------------------------------- releases


async def run(tmp_path: Path, doc: dict[str, Any], **kw: Any) -> FileReport:
    path = tmp_path / "net.conflist"
    path.write_text(json.dumps(doc, indent=1))
    (report,) = await validate_paths([str(path)], cni_path=[], check_presence=False, **kw)
    return report


def found(report: FileReport) -> list[tuple[str, str]]:
    return [(f.code, f.location) for f in report.findings if f.code not in ("CV211",)]


@pytest.mark.anyio
async def test_fields_newer_than_the_release_are_ignored_like_that_release(
    tmp_path: Path,
) -> None:
    doc = {"cniVersion": "1.0.0", "name": "n", "plugins": [
        {"type": "bridge", "portIsolation": "yes", "vlanTrunk": [{"id": 9999}],
         "ipam": {"type": "host-local", "subnet": "10.1.0.0/16",
                  "routes": [{"dst": "0.0.0.0/0", "mtu": "x"}]}},
        {"type": "sbr", "table": 100}]}  # fmt: skip
    newest = await run(tmp_path, doc)
    assert found(newest) == [
        ("CV310", "plugins[0].portIsolation"),
        ("CV310", "plugins[0].ipam.routes[0].mtu"),
    ]
    older = await run(tmp_path, doc, plugins_release=DEBIAN)
    assert found(older) == [
        ("CV313", "plugins[0].portIsolation"),
        ("CV313", "plugins[0].vlanTrunk"),
        ("CV313", "plugins[0].ipam.routes[0].mtu"),
        ("CV313", "plugins[1].table"),
    ]
    assert "added to bridge in v1.7.0: the v1.1.1 plugins ignore it" in older.findings[0].message


@pytest.mark.anyio
async def test_plugins_newer_than_the_release(tmp_path: Path) -> None:
    doc = {"cniVersion": "1.0.0", "name": "n", "plugins": [
        {"type": "tap"}, {"type": "tuning"}]}  # fmt: skip
    assert found(await run(tmp_path, doc)) == []
    assert found(await run(tmp_path, doc, plugins_release=(1, 2, 0))) == [
        ("CV313", "plugins[0].type")
    ]


def test_release_numbers() -> None:
    assert parse_release("v1.1.1") == (1, 1, 1)
    assert parse_release("1.9.1") == (1, 9, 1)
    for bad in ("1.1", "0.9.1", "1.x.0", "\uff11.1.1"):  # the last: a fullwidth digit
        with pytest.raises(ValueError):
            parse_release(bad)


def test_every_reference_plugin_has_a_good_and_a_bad_corpus_file() -> None:
    names = [p.name for p in ALL_FILES]
    texts = {p.name: p.read_text() for p in ALL_FILES}
    for plugin_type in REFERENCE_PLUGINS:
        quoted = f'"type": "{plugin_type}"'
        good = [n for n in names if (CORPUS / "good" / n).exists() and quoted in texts[n]]
        bad = [n for n in names if n.startswith(("ref-", "typo-")) and quoted in texts[n]]
        assert good, plugin_type
        assert bad, plugin_type


# --------------------------------------------------------------------------- keys


@pytest.mark.parametrize(
    ("key", "known", "guess"),
    [
        ("exclude_namespace", ("exclude_namespaces", "pod_namespace"), "exclude_namespaces"),
        ("isDefaultGW", ("isGateway", "isDefaultGateway"), "isDefaultGateway"),
        ("range_start", ("rangeStart", "rangeEnd"), "rangeStart"),
        ("ipmasq-backend", ("ipMasq", "ipMasqBackend"), "ipMasqBackend"),
        ("frobnicate", ("ipMasq", "mtu"), None),
    ],
)
def test_suggestions(key: str, known: tuple[str, ...], guess: str | None) -> None:
    assert suggest(key, known) == guess


@pytest.mark.anyio
async def test_keys_runtimes_add_never_warn(tmp_path: Path) -> None:
    doc = {"cniVersion": "1.0.0", "name": "n", "plugins": [
        {"type": "bridge", "name": "x", "cniVersion": "1.0.0", "args": {"cni": {"ips": []}},
         "capabilities": {"mac": True}, "mac": "c2:b0:57:49:47:f1", "dns": {},
         "cni.dev/valid-attachments": []},
        {"type": "passthrough", "log_level": "debug", "log_file": "/tmp/x.log"}]}  # fmt: skip
    assert [f.code for f in (await run(tmp_path, doc)).findings if f.code != "CV211"] == []


def test_sdk_keys_are_the_ones_the_default_log_settings_reads() -> None:
    from cnisdk import NetConf

    config = NetConf.model_validate({"log_level": "debug", "log_file": "/tmp/f", "other": "x"})
    assert Plugin().log_settings(config) == ("debug", "/tmp/f")


@pytest.mark.anyio
async def test_null_is_what_go_makes_of_it(tmp_path: Path) -> None:
    # null leaves a Go field as it is: no type error, no unknown key.
    doc = {"cniVersion": "1.0.0", "name": "n", "plugins": [
        {"type": "bridge", "mtu": None, "bridge": None,
         "ipam": {"type": "host-local", "subnet": "10.1.0.0/16", "routes": None}}]}  # fmt: skip
    assert found(await run(tmp_path, doc)) == []
