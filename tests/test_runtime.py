"""cnisdk._runtime against fake plugins: libcni's injection, ordering, cache and error rules."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from cnisdk import Context, Interface, NetConf, Plugin, Result
from cnisdk._confdir import conflist_from_bytes, load_network
from cnisdk._plugin import Attachment
from cnisdk._runtime import ChainError, CNIRuntime, GCError, RuntimeConf
from cnisdk.spec._errors import CNIError
from cnisdk.spec._result import result_to_dict
from cnisdk.testing import FakeExec

FIXTURES = Path(__file__).parent / "fixtures" / "libcni-cache"

# One fake plugin, installed under several type names. It logs each call (type, command, CNI_*
# env, stdin) as a JSON line, fails when FAKE_FAIL_<TYPE>_<COMMAND> holds an error document,
# and on ADD appends an interface named after its type to the prevResult (or starts a result).
FAKE_PLUGIN = """\
#!{python}
import fcntl, json, os, sys
kind = os.path.basename(sys.argv[0])
command = os.environ.get("CNI_COMMAND", "")
stdin = sys.stdin.read()
conf = json.loads(stdin) if stdin else {{}}
env = {{k: v for k, v in os.environ.items() if k.startswith("CNI_")}}
with open(os.environ["FAKE_LOG"], "a") as log:
    fcntl.flock(log, fcntl.LOCK_EX)
    log.write(json.dumps({{"type": kind, "command": command, "env": env, "stdin": conf}}) + "\\n")
fail = os.environ.get("FAKE_FAIL_" + kind.replace("-", "_").upper() + "_" + command)
if fail:
    sys.stdout.write(fail)
    sys.exit(1)
if command == "ADD":
    version = conf.get("cniVersion", "")
    result = conf.get("prevResult") or {{"cniVersion": version, "ips": []}}
    result["cniVersion"] = version
    result.setdefault("interfaces", []).append({{"name": kind}})
    if not result["ips"]:
        ip = {{"address": "10.1.0.2/24", "gateway": "10.1.0.1"}}
        if version.startswith("0."):
            ip["version"] = "4"
        result["ips"].append(ip)
    sys.stdout.write(json.dumps(result))
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Fakes:
    def __init__(self, tmp_path: Path) -> None:
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        self.log = tmp_path / "calls.jsonl"
        self.cache = tmp_path / "cache"
        self.env: dict[str, str] = {**os.environ, "FAKE_LOG": str(self.log)}
        source = FAKE_PLUGIN.format(python=sys.executable)
        for name in ("fake-a", "fake-b", "fake-c"):
            path = self.bin / name
            path.write_text(source)
            path.chmod(0o755)

    def runtime(self) -> CNIRuntime:
        return CNIRuntime([str(self.bin)], cache_dir=str(self.cache), environ=self.env)

    def fail(self, plugin: str, command: str, doc: dict[str, Any]) -> None:
        self.env[f"FAKE_FAIL_{plugin.replace('-', '_').upper()}_{command}"] = json.dumps(doc)

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def reset(self) -> None:
        self.log.unlink(missing_ok=True)


@pytest.fixture
def fakes(tmp_path: Path) -> Fakes:
    return Fakes(tmp_path)


def chain(version: str = "1.0.0", *plugins: dict[str, Any], **extra: Any) -> Any:
    doc = {"cniVersion": version, "name": "testnet", **extra}
    doc["plugins"] = list(plugins) or [{"type": "fake-a"}, {"type": "fake-b"}]
    return conflist_from_bytes(json.dumps(doc).encode())


RT = RuntimeConf(container_id="ctr1", netns="/var/run/netns/fake", ifname="eth0")


# -- injection ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_injection_rules(fakes: Fakes) -> None:
    conflist = chain(
        "1.0.0",
        {
            "type": "fake-a",
            "name": "own-name",
            "cniVersion": "0.1.0",
            "capabilities": {"portMappings": True, "bandwidth": False, "ips": True},
            "runtimeConfig": {"stale": 1},
            "custom": {"z": 1, "a": 2},
        },
        {"type": "fake-b", "runtimeConfig": {"kept": True}, "capabilities": {"mac": True}},
    )
    rt = RuntimeConf(
        "ctr1",
        "/var/run/netns/fake",
        "eth0",
        args=[("K8S_POD_NAME", "p"), ("IgnoreUnknown", "1")],
        capability_args={"portMappings": [{"hostPort": 80}], "bandwidth": {"rate": 1}},
    )
    result = await fakes.runtime().add(conflist, rt)
    first, second = fakes.calls()
    assert first["stdin"]["name"] == "testnet" and first["stdin"]["cniVersion"] == "1.0.0"
    # declared-and-given capabilities only, replacing the plugin's own runtimeConfig
    assert first["stdin"]["runtimeConfig"] == {"portMappings": [{"hostPort": 80}]}
    assert first["stdin"]["capabilities"]["bandwidth"] is False  # not removed, as libcni
    assert first["stdin"]["custom"] == {"a": 2, "z": 1}
    assert "prevResult" not in first["stdin"] and "args" not in first["stdin"]
    # no matching capability: runtimeConfig untouched
    assert second["stdin"]["runtimeConfig"] == {"kept": True}
    assert second["stdin"]["prevResult"]["interfaces"] == [{"name": "fake-a"}]
    assert list(second["stdin"]) == sorted(second["stdin"])
    env = first["env"]
    assert env["CNI_COMMAND"] == "ADD" and env["CNI_CONTAINERID"] == "ctr1"
    assert env["CNI_ARGS"] == "K8S_POD_NAME=p;IgnoreUnknown=1"
    assert env["CNI_PATH"] == str(fakes.bin) and env["CNI_IFNAME"] == "eth0"
    assert [i["name"] for i in result_to_dict(result)["interfaces"]] == ["fake-a", "fake-b"]


@pytest.mark.anyio
async def test_add_error_keeps_code_and_wraps_message(fakes: Fakes) -> None:
    fakes.fail("fake-b", "ADD", {"code": 11, "msg": "try later", "details": "busy"})
    conflist = chain("1.0.0", {"type": "fake-a"}, {"type": "fake-b", "name": "bee"})
    with pytest.raises(ChainError) as info:
        await fakes.runtime().add(conflist, RT)
    assert info.value.code == 11
    assert str(info.value) == 'plugin type="fake-b" name="bee" failed (add): try later; busy'
    assert isinstance(info.value.cause, CNIError) and info.value.cause.msg == "try later"
    assert not (fakes.cache / "results").exists()  # nothing cached after a failed ADD


@pytest.mark.anyio
async def test_add_missing_plugin_and_invalid_names(fakes: Fakes) -> None:
    runtime = fakes.runtime()
    with pytest.raises(ChainError) as info:
        await runtime.add(chain("1.0.0", {"type": "nope"}), RT)
    assert str(info.value) == (
        f'plugin type="nope" failed (add): failed to find plugin "nope" in path [{fakes.bin}]'
    )
    for rt, code in (
        (RuntimeConf("../../etc", "/x", "eth0"), 4),
        (RuntimeConf("ctr1", "/x", "eth0/../.."), 4),
        (RuntimeConf("", "/x", "eth0"), 3),
    ):
        with pytest.raises(ChainError) as info:
            await runtime.add(chain(), rt)
        assert info.value.code == code
    assert fakes.calls() == []
    assert not (fakes.cache / "results").exists()


# -- CHECK / DEL ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_check_forward_with_cached_result(fakes: Fakes) -> None:
    runtime = fakes.runtime()
    conflist = chain("1.0.0", {"type": "fake-a"}, {"type": "fake-b"}, {"type": "fake-c"})
    result = await runtime.add(conflist, RT)
    fakes.reset()
    await runtime.check(conflist, RT)
    calls = fakes.calls()
    assert [c["type"] for c in calls] == ["fake-a", "fake-b", "fake-c"]
    assert all(c["stdin"]["prevResult"] == result_to_dict(result) for c in calls)


@pytest.mark.anyio
async def test_check_version_and_disable(fakes: Fakes) -> None:
    runtime = fakes.runtime()
    with pytest.raises(ValueError, match=r'configuration version "0.3.1" does not support'):
        await runtime.check(chain("0.3.1"), RT)
    await runtime.check(chain("1.0.0", disableCheck=True), RT)
    assert fakes.calls() == []
    # no cache: plugins run without prevResult
    await runtime.check(chain("1.0.0"), RT)
    assert all("prevResult" not in c["stdin"] for c in fakes.calls())


@pytest.mark.anyio
async def test_check_error_is_unwrapped(fakes: Fakes) -> None:
    fakes.fail("fake-a", "CHECK", {"code": 100, "msg": "wrong mtu"})
    with pytest.raises(CNIError) as info:
        await fakes.runtime().check(chain("1.0.0"), RT)
    assert not isinstance(info.value, ChainError) and info.value.code == 100
    assert [c["type"] for c in fakes.calls()] == ["fake-a"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("version", "gets_prev"), [("0.3.1", False), ("0.4.0", True), ("1.0.0", True)]
)
async def test_del_reverse_and_prev_result_by_version(
    fakes: Fakes, version: str, gets_prev: bool
) -> None:
    runtime = fakes.runtime()
    conflist = chain(version, {"type": "fake-a"}, {"type": "fake-b"}, {"type": "fake-c"})
    await runtime.add(conflist, RT)
    cache_file = runtime.cache_path("testnet", RT)
    assert cache_file.exists()
    fakes.reset()
    await runtime.delete(conflist, RT)
    calls = fakes.calls()
    assert [c["type"] for c in calls] == ["fake-c", "fake-b", "fake-a"]
    assert all(("prevResult" in c["stdin"]) is gets_prev for c in calls)
    # libcni >= 1.2 removes the entry only when it read it (so it stays below 0.4.0)
    assert cache_file.exists() is (not gets_prev)


@pytest.mark.anyio
async def test_del_error_wrapped_and_corrupt_cache_dropped(fakes: Fakes) -> None:
    runtime = fakes.runtime()
    conflist = chain("1.0.0")
    path = runtime.cache_path("testnet", RT)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    await runtime.delete(conflist, RT)
    assert not path.exists()
    assert all("prevResult" not in c["stdin"] for c in fakes.calls())
    fakes.fail("fake-a", "DEL", {"code": 7, "msg": "bad"})
    with pytest.raises(ChainError, match=r'^plugin type="fake-a" failed \(delete\): bad$'):
        await runtime.delete(conflist, RT)


# -- GC / STATUS ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_gc_deletes_stale_then_gcs_every_plugin(fakes: Fakes) -> None:
    runtime = fakes.runtime()
    conflist = chain("1.1.0")
    keep = RuntimeConf("keep", "/var/run/netns/k", "eth0")
    stale = RuntimeConf("stale", "/var/run/netns/s", "eth0", args=[("A", "b")])
    await runtime.add(conflist, keep)
    await runtime.add(conflist, stale)
    await runtime.add(chain("1.1.0", name="othernet"), stale)  # another network: untouched
    fakes.reset()
    fakes.fail("fake-a", "GC", {"code": 100, "msg": "gc failed"})
    with pytest.raises(GCError) as info:
        await runtime.gc(conflist, [Attachment("keep", "eth0")])
    assert str(info.value) == "failed to GC plugin fake-a: gc failed"
    calls = fakes.calls()
    dels = [c for c in calls if c["command"] == "DEL"]
    assert [(c["type"], c["env"]["CNI_CONTAINERID"]) for c in dels] == [
        ("fake-b", "stale"),
        ("fake-a", "stale"),
    ]
    assert dels[0]["env"]["CNI_ARGS"] == "A=b" and dels[0]["env"]["CNI_NETNS"] == "/var/run/netns/s"
    gcs = [c for c in calls if c["command"] == "GC"]
    assert [c["type"] for c in gcs] == ["fake-a", "fake-b"]  # continued past the error
    valid = [{"containerID": "keep", "ifname": "eth0"}]
    assert gcs[1]["stdin"]["cni.dev/valid-attachments"] == valid
    assert gcs[1]["stdin"]["cni.dev/attachments"] == valid
    assert gcs[1]["env"]["CNI_CONTAINERID"] == "" and gcs[1]["env"]["CNI_IFNAME"] == ""
    remaining = {(a.network, a.container_id) for a in runtime.cached_attachments()}
    assert remaining == {("testnet", "keep"), ("othernet", "stale")}


@pytest.mark.anyio
async def test_gc_disabled_and_old_versions(fakes: Fakes) -> None:
    runtime = fakes.runtime()
    await runtime.add(chain("1.1.0", disableGC=True), RT)
    fakes.reset()
    await runtime.gc(chain("1.1.0", disableGC=True), None)
    assert fakes.calls() == []
    await runtime.add(chain("1.0.0"), RT)
    fakes.reset()
    await runtime.gc(chain("1.0.0"), None)  # stale DEL yes, GC verb no (below 1.1.0)
    assert {c["command"] for c in fakes.calls()} == {"DEL"}


@pytest.mark.anyio
async def test_status_stops_at_first_error(fakes: Fakes) -> None:
    runtime = fakes.runtime()
    conflist = chain("1.1.0", {"type": "fake-a"}, {"type": "fake-b"}, {"type": "fake-c"})
    await runtime.status(conflist)
    assert [c["type"] for c in fakes.calls()] == ["fake-a", "fake-b", "fake-c"]
    assert fakes.calls()[0]["stdin"]["name"] == "testnet"
    fakes.reset()
    fakes.fail("fake-b", "STATUS", {"code": 50, "msg": "not ready"})
    with pytest.raises(CNIError) as info:
        await runtime.status(conflist)
    assert info.value.code == 50 and not isinstance(info.value, ChainError)
    assert [c["type"] for c in fakes.calls()] == ["fake-a", "fake-b"]
    fakes.reset()
    await runtime.status(chain("1.0.0"))
    assert fakes.calls() == []


# -- cache format ---------------------------------------------------------------------------

FIXED_RESULT = {
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "eth0", "mac": "0a:58:0a:f4:00:05", "sandbox": "/var/run/netns/fx"}],
    "ips": [{"interface": 0, "address": "10.244.0.5/24", "gateway": "10.244.0.1"}],
    "dns": {},
}


@pytest.mark.anyio
async def test_cache_file_is_byte_identical_to_libcni(fakes: Fakes, tmp_path: Path) -> None:
    # A plugin answering a fixed result; the fixture was written by hand in the exact shape of
    # libcni's cachedInfo (field order, base64 config, sorted maps, compact JSON).
    fixed = fakes.bin / "fixed"
    fixed.write_text(f"#!/bin/sh\ncat >/dev/null\nprintf '%s' '{json.dumps(FIXED_RESULT)}'\n")
    fixed.chmod(0o755)
    conflist = load_network(FIXTURES / "mynet.conflist")
    rt = RuntimeConf(
        "c0ffee",
        "/var/run/netns/fx",
        "eth0",
        args=[("K8S_POD_NAME", "web")],
        capability_args={"portMappings": [{"hostPort": 8080, "containerPort": 80}], "io.x": 1},
    )
    runtime = fakes.runtime()
    await runtime.add(conflist, rt)
    written = runtime.cache_path("mynet", rt)
    expected = (FIXTURES / "results" / "mynet-c0ffee-eth0").read_bytes().rstrip(b"\n")
    assert written.read_bytes() == expected
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert stat.S_IMODE(written.parent.stat().st_mode) == 0o700
    doc = json.loads(written.read_bytes())
    assert base64.b64decode(doc["config"]) == (FIXTURES / "mynet.conflist").read_bytes()
    assert [p.name for p in written.parent.iterdir()] == [written.name]  # no temp files left


@pytest.mark.anyio
@pytest.mark.parametrize("fixture", ["mynet-c0ffee-eth0", "legacy-mynet-c0ffee-eth0"])
async def test_libcni_written_cache_is_read_for_del(
    fakes: Fakes, tmp_path: Path, fixture: str
) -> None:
    (fakes.cache / "results").mkdir(parents=True, mode=0o700)
    target = fakes.cache / "results" / "mynet-c0ffee-eth0"
    shutil.copy(FIXTURES / "results" / fixture, target)
    shutil.copy(fakes.bin / "fake-a", fakes.bin / "fixed")
    runtime = fakes.runtime()
    conflist = load_network(FIXTURES / "mynet.conflist")
    rt = RuntimeConf("c0ffee", "/var/run/netns/fx", "eth0")
    cached = runtime.get_cached_result(conflist, rt)
    assert cached is not None and result_to_dict(cached)["ips"][0]["address"] == "10.244.0.5/24"
    await runtime.delete(conflist, rt)
    (call,) = fakes.calls()
    assert call["stdin"]["prevResult"]["interfaces"][0]["mac"] == "0a:58:0a:f4:00:05"
    assert not target.exists()


@pytest.mark.anyio
async def test_cached_result_converted_to_list_version(fakes: Fakes) -> None:
    runtime = fakes.runtime()
    await runtime.add(chain("0.4.0"), RT)
    cached = runtime.get_cached_result(chain("1.0.0"), RT)
    assert cached is not None and cached.cni_version == "1.0.0"


@pytest.mark.anyio
async def test_parallel_adds_and_dels_keep_the_cache_sound(fakes: Fakes) -> None:
    runtime = fakes.runtime()
    conflist = chain("1.0.0", {"type": "fake-a"})

    async def one(i: int) -> None:
        rt = RuntimeConf(f"ctr{i}", f"/var/run/netns/n{i}", "eth0")
        await runtime.add(conflist, rt)
        assert runtime.get_cached_result(conflist, rt) is not None
        if i % 2:
            await runtime.delete(conflist, rt)

    async with anyio.create_task_group() as group:
        for i in range(20):
            group.start_soon(one, i)
    remaining = sorted(a.container_id for a in runtime.cached_attachments())
    assert remaining == sorted(f"ctr{i}" for i in range(0, 20, 2))
    assert all(not p.name.startswith(".") for p in (fakes.cache / "results").iterdir())


# -- hostile or corrupt cache entries --------------------------------------------------------

CORRUPT_ENTRIES = {
    "not-json": b"{",
    "not-an-object": b"[1,2]",
    "cniargs-not-a-list": b'{"kind":"cniCacheV1","containerId":"x","ifName":"eth0",'
    b'"networkName":"testnet","cniArgs":"K=V"}',
    "cniargs-not-pairs": b'{"kind":"cniCacheV1","containerId":"x","ifName":"eth0",'
    b'"networkName":"testnet","cniArgs":[1]}',
    "config-not-base64": b'{"kind":"cniCacheV1","containerId":"x","ifName":"eth0",'
    b'"networkName":"testnet","config":"%%%"}',
    "ifname-not-a-string": b'{"kind":"cniCacheV1","containerId":"x","ifName":7,'
    b'"networkName":"testnet"}',
    "capability-args-not-an-object": b'{"kind":"cniCacheV1","containerId":"x","ifName":"eth0",'
    b'"networkName":"testnet","capabilityArgs":[]}',
    "deep": b'{"kind":"cniCacheV1","containerId":"x","ifName":"eth0","networkName":"testnet",'
    b'"result":' + b"[" * 5000 + b"]" * 5000 + b"}",
}


@pytest.mark.anyio
async def test_gc_skips_corrupt_entries_and_collects_the_rest(fakes: Fakes) -> None:
    runtime = fakes.runtime()
    conflist = chain("1.1.0")
    await runtime.add(conflist, RuntimeConf("stale", "/var/run/netns/s", "eth0"))
    results = fakes.cache / "results"
    for name, body in CORRUPT_ENTRIES.items():
        (results / f"testnet-{name}-eth0").write_bytes(body)
    os.mkfifo(results / "testnet-fifo-eth0")  # must not block the listing
    fakes.reset()
    await runtime.gc(conflist, [])
    deleted = {c["env"]["CNI_CONTAINERID"] for c in fakes.calls() if c["command"] == "DEL"}
    assert deleted == {"stale"}
    assert not (results / "testnet-stale-eth0").exists()
    # What libcni cannot read it leaves alone, as here.
    assert {p.name for p in results.iterdir()} == {
        *(f"testnet-{name}-eth0" for name in CORRUPT_ENTRIES),
        "testnet-fifo-eth0",
    }


@pytest.mark.anyio
@pytest.mark.parametrize("name", sorted(CORRUPT_ENTRIES))
async def test_del_with_a_corrupt_cache_entry_proceeds_without_prev_result(
    fakes: Fakes, name: str
) -> None:
    runtime = fakes.runtime()
    conflist = chain("1.0.0")
    rt = RuntimeConf("ctr9", "/var/run/netns/s", "eth0")
    await runtime.add(conflist, rt)
    runtime.cache_path("testnet", rt).write_bytes(CORRUPT_ENTRIES[name])
    fakes.reset()
    await runtime.delete(conflist, rt)
    dels = [c for c in fakes.calls() if c["command"] == "DEL"]
    assert [c["type"] for c in dels] == ["fake-b", "fake-a"]
    # As libcni: a file that is not a cachedInfo is read as a bare (legacy) result; one that
    # does not decode as a result either is dropped, and DEL runs without a prevResult.
    expected = None if name in ("not-json", "not-an-object") else {"cniVersion": "1.0.0"}
    assert all(c["stdin"].get("prevResult") == expected for c in dels)
    assert not runtime.cache_path("testnet", rt).exists()


# -- the exec boundary: a chain without binaries -----------------------------------------------


class Tagger(Plugin[NetConf]):
    """Chained: ADD appends an interface named after the config's ``tag``."""

    chained = True

    async def add(self, ctx: Context[NetConf]) -> Result:
        prev = ctx.require_prev_result()
        prev.interfaces.append(Interface(name=str((ctx.config.model_extra or {})["tag"])))
        return prev

    async def check(self, ctx: Context[NetConf]) -> None:
        ctx.require_prev_result()  # the cached ADD result, from the runtime


@pytest.mark.anyio
async def test_a_chain_runs_through_the_injected_exec(tmp_path: Path) -> None:
    fake = FakeExec()
    fake.respond("ADD", "first", {"cniVersion": "1.0.0", "ips": [{"address": "10.5.0.2/24"}]})
    fake.install("tagger", Tagger)
    runtime = CNIRuntime(["/no/such/dir"], cache_dir=str(tmp_path), exec=fake)
    conflist = chain("1.0.0", {"type": "first"}, {"type": "tagger", "tag": "t1"})

    result = await runtime.add(conflist, RT)
    assert result_to_dict(result) == {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "t1"}],
        "ips": [{"address": "10.5.0.2/24"}],
    }
    await runtime.check(conflist, RT)
    await runtime.delete(conflist, RT)
    assert [(c.plugin_type, c.command) for c in fake.calls] == [
        ("first", "ADD"), ("tagger", "ADD"),
        ("first", "CHECK"), ("tagger", "CHECK"),
        ("tagger", "DEL"), ("first", "DEL"),
    ]  # fmt: skip
    first_add, tagger_add = fake.calls[:2]
    assert "prevResult" not in first_add.config
    assert tagger_add.config["prevResult"] == {
        "cniVersion": "1.0.0",
        "ips": [{"address": "10.5.0.2/24"}],
    }
    assert tagger_add.environ["CNI_PATH"] == "/no/such/dir"
    assert tagger_add.environ["CNI_CONTAINERID"] == "ctr1"
    assert fake.calls[3].config["prevResult"] == result_to_dict(result)  # CHECK: the cache
    assert not runtime.cache_path("testnet", RT).exists()


@pytest.mark.anyio
async def test_version_probes_go_through_the_injected_exec() -> None:
    fake = FakeExec()
    runtime = CNIRuntime(["/no/such/dir"], exec=fake)
    conflist = chain("1.0.0", {"type": "first", "capabilities": {"portMappings": True}})
    assert await runtime.validate(conflist) == ["portMappings"]
    [probe] = fake.calls
    assert (probe.command, probe.config) == ("VERSION", {"cniVersion": "1.1.0"})
    assert probe.environ["CNI_PATH"] == "dummy"  # libcni's fixed probe environment
    fake.respond("VERSION", "first", {"cniVersion": "1.1.0", "supportedVersions": ["0.4.0"]})
    with pytest.raises(
        ValueError, match=r'^\[plugin first does not support config version "1.0.0"\]$'
    ):
        await runtime.validate(conflist)
