"""Byte-for-byte parity with a real Go skel plugin: Debian's ``tuning`` (CNI lib 1.1.2).

``tuning`` is a chained plugin, like ``passthrough``. For every input below, Go's 1.1.2 skel and
the newer skel cnisdk follows are defined to behave the same, so both
binaries get the IDENTICAL environment and stdin and must print identical bytes and exit alike.

Known divergences (asserted separately, cnisdk's side only, in ``test_divergence_*``):

- VERSION: cnisdk reports ``"cniVersion":"1.1.0"`` and supports 1.1.0 ([new] skel); Go 1.1.2
  says ``1.0.0``. Hence every message that lists the supported versions ("incompatible CNI
  versions" details) differs by ``"1.1.0"``, and CHECK with a 1.1.0 config is accepted by
  cnisdk but refused by Go ("plugin version does not allow CHECK").
- GC and STATUS: [new] verbs with their own checks (only CNI_COMMAND/CNI_PATH required, config
  version >= 1.1.0); Go 1.1.2 treats them as unknown commands after validating containerID and
  ifname (so ``GC`` with only CNI_PATH is ``missing containerID`` there).
- Order of checks ([new]): an invalid containerID/ifname is reported before missing variables.
- CNI_NETNS naming the plugin's own namespace is refused with code 8 for ADD and DEL ([new]
  CheckNetNS; CHECK is not checked), before the plugin runs (Go [new] prints the result first,
  then the error); Go 1.1.2 does not check.
- Plugin-specific, not skel: ADD without prevResult is code 7 "must be called as chained
  plugin" in cnisdk (tuning: 999 "Required prevResult missing"). On DEL an unreadable
  prevResult is logged and ignored, so DEL succeeds as tuning's does, also when it is not an
  object at all (tuning: 999 from decoding its config).
- A config that does not fit the plugin's model is code 7 in cnisdk (tuning: 999 "failed to
  load netconf: ..."), e.g. ``capabilities`` whose values are not booleans.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

GO_TUNING = Path("/usr/lib/cni/tuning")
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
FULL = {
    "CNI_CONTAINERID": "abc",
    "CNI_NETNS": "/var/run/netns/cnisdk-parity-none",
    "CNI_IFNAME": "eth0",
    "CNI_ARGS": "",
    "CNI_PATH": "/opt/cni/bin",
}
CONF = b'{"cniVersion":"1.0.0","name":"n","type":"x"}'

pytestmark = pytest.mark.skipif(not GO_TUNING.exists(), reason="Debian's Go CNI plugins needed")


@pytest.fixture(scope="module")
def passthrough(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bin_dir = tmp_path_factory.mktemp("bin")
    cnisdk = Path(sys.executable).parent / "cnisdk"
    subprocess.run(
        [str(cnisdk), "install", "--bin-dir", str(bin_dir), "passthrough"],
        check=True,
        capture_output=True,
    )
    return bin_dir / "passthrough"


def execute(exe: Path, env: Mapping[str, str], stdin: bytes) -> tuple[int, bytes]:
    done = subprocess.run(
        [str(exe)],
        input=stdin,
        env={**env, "PATH": PATH},
        capture_output=True,
        check=False,
        timeout=60,
    )
    return done.returncode, done.stdout


def cmd(command: str, **overrides: str) -> dict[str, str]:
    return {**FULL, "CNI_COMMAND": command, **overrides}


def conf(**fields: object) -> bytes:
    return json.dumps({"cniVersion": "1.0.0", "name": "n", "type": "x", **fields}).encode()


CASES: list[tuple[str, dict[str, str], bytes]] = [
    # missing environment
    ("add-only-command", {"CNI_COMMAND": "ADD"}, CONF),
    ("del-only-command", {"CNI_COMMAND": "DEL"}, CONF),
    ("check-only-command", {"CNI_COMMAND": "CHECK"}, CONF),
    ("add-no-path", cmd("ADD", CNI_PATH=""), CONF),
    ("add-no-netns", cmd("ADD", CNI_NETNS=""), CONF),
    ("check-no-ifname-no-path", cmd("CHECK", CNI_IFNAME="", CNI_PATH=""), CONF),
    ("del-no-ifname-netns-optional", cmd("DEL", CNI_NETNS="", CNI_IFNAME=""), CONF),
    ("add-empty-containerid", cmd("ADD", CNI_CONTAINERID=""), CONF),
    # invalid containerID (full env otherwise)
    ("cid-space", cmd("ADD", CNI_CONTAINERID="a b"), CONF),
    ("cid-newline", cmd("DEL", CNI_CONTAINERID="abc\n"), CONF),
    ("cid-dash", cmd("CHECK", CNI_CONTAINERID="-a"), CONF),
    ("cid-umlaut", cmd("ADD", CNI_CONTAINERID="ä"), CONF),
    ("cid-undecodable", cmd("DEL", CNI_CONTAINERID="a\udcff"), CONF),
    # invalid ifname
    ("ifname-16", cmd("ADD", CNI_IFNAME="1234567890123456"), CONF),
    ("ifname-dot", cmd("ADD", CNI_IFNAME="."), CONF),
    ("ifname-dotdot", cmd("DEL", CNI_IFNAME=".."), CONF),
    ("ifname-colon", cmd("DEL", CNI_IFNAME="eth0:1"), CONF),
    ("ifname-slash", cmd("CHECK", CNI_IFNAME="a/b"), CONF),
    ("ifname-nbsp", cmd("ADD", CNI_IFNAME="a\u00a0b"), CONF),
    ("ifname-tab", cmd("ADD", CNI_IFNAME="a\tb"), CONF),
    ("ifname-16-bytes-umlaut", cmd("ADD", CNI_IFNAME="ää345678901234"), CONF),
    # network name
    ("name-missing", cmd("ADD"), b'{"cniVersion":"1.0.0"}'),
    ("name-empty", cmd("DEL"), b'{"cniVersion":"1.0.0","name":""}'),
    ("name-invalid", cmd("ADD"), b'{"cniVersion":"1.0.0","name":"a b"}'),
    ("name-html", cmd("DEL"), '{"name":"a<b&\u2028é"}'.encode()),
    ("name-not-string", cmd("ADD"), b'{"cniVersion":"1.0.0","name":5}'),
    ("name-invalid-utf8", cmd("DEL"), b'{"name":"n\xff"}'),
    ("name-lone-surrogate", cmd("DEL"), b'{"name":"\\ud800"}'),
    ("stdin-null", cmd("DEL"), b"null"),
    ("stdin-string", cmd("DEL"), b'"n"'),
    ("stdin-number", cmd("ADD"), b"12"),
    ("stdin-array", cmd("CHECK"), b"[1]"),
    ("uppercase-keys", cmd("CHECK"), b'{"CNIVERSION":"0.3.1","NAME":"n"}'),
    # stdin that is not JSON
    ("del-empty-stdin", cmd("DEL"), b""),
    ("del-whitespace-stdin", cmd("DEL"), b" \n"),
    ("add-garbage", cmd("ADD"), b"xyz"),
    # encoding/json syntax errors, in Go's words (full table: tests/spec/test_json.py)
    ("json-truncated-object", cmd("ADD"), b'{"name":"n"'),
    ("json-after-key", cmd("DEL"), b'{"name"}'),
    ("json-after-key-value", cmd("DEL"), b'{"name":"n" "x":1}'),
    ("json-after-array-element", cmd("CHECK"), b"[1 2]"),
    ("json-after-top-level", cmd("DEL"), b'{"name":"n"} x'),
    ("json-trailing-nul", cmd("DEL"), b'{"a":1}\x00'),
    ("json-newline-in-string", cmd("DEL"), b'{"name":"a\nb"}'),
    ("json-nul-in-string", cmd("DEL"), b'{"a":"\x7f\x00"}'),
    ("json-bad-escape", cmd("DEL"), b'{"name":"\\q"}'),
    ("json-bad-hex-escape", cmd("DEL"), b'{"name":"\\u12g4"}'),
    ("json-escape-at-end", cmd("DEL"), b'"\\'),
    ("json-minus-alone", cmd("DEL"), b'{"mtu":-x}'),
    ("json-decimal-point", cmd("DEL"), b'{"mtu":1.}'),
    ("json-exponent", cmd("DEL"), b'{"mtu":1ex}'),
    ("json-leading-zero", cmd("DEL"), b'{"mtu":01}'),
    ("json-literal-true", cmd("DEL"), b'{"a":tru}'),
    ("json-literal-false-at-end", cmd("DEL"), b'{"a":fals'),
    ("json-literal-null", cmd("CHECK"), b'{"a":nul,'),
    ("json-key-not-string", cmd("DEL"), b"{1:2}"),
    ("json-single-quotes", cmd("DEL"), b"{'name':'n'}"),
    ("json-trailing-comma-object", cmd("DEL"), b'{"name":"n",}'),
    ("json-trailing-comma-array", cmd("DEL"), b"[1,]"),
    ("json-nan", cmd("DEL"), b'{"mtu":NaN}'),
    ("json-minus-infinity", cmd("DEL"), b'{"mtu":-Infinity}'),
    ("json-infinity-with-valid-name", cmd("CHECK"), conf()[:-1] + b',"x":Infinity}'),
    ("json-bom", cmd("DEL"), b'\xef\xbb\xbf{"name":"n"}'),
    ("json-latin1-byte", cmd("DEL"), b"\xff"),
    ("json-too-deep", cmd("DEL"), b'{"x":' + b"[" * 10000 + b"]" * 10000 + b"}"),
    # documents Go accepts that Python's json module would not read (or would read otherwise)
    (
        "json-deep-but-allowed",
        cmd("DEL"),
        conf()[:-1] + b',"x":' + b"[" * 5000 + b"]" * 5000 + b"}",
    ),
    ("json-5000-digit-number", cmd("DEL"), conf()[:-1] + b',"x":' + b"9" * 5000 + b"}"),
    ("json-overlong-utf8-elsewhere", cmd("DEL"), conf()[:-1] + b',"x":"\xc0\x80"}'),
    ("name-truncated-utf8", cmd("DEL"), b'{"name":"n\xe2\x82"}'),
    ("name-truncated-4-byte-utf8", cmd("DEL"), b'{"name":"n\xf0\x9f\x98"}'),
    ("json-whitespace-everywhere", cmd("DEL"), b'\t{"name":"n" , "cniVersion" : "0.4.0"\r\n\t} '),
    # incompatible versions (the plugin's supported list is not in these messages)
    ("version-not-string", cmd("ADD"), b'{"cniVersion":4,"name":"n"}'),
    ("check-config-0.3.1", cmd("CHECK"), conf(cniVersion="0.3.1")),
    ("check-config-0.1.0-implicit", cmd("CHECK"), b'{"name":"n"}'),
    ("check-config-1.2.0", cmd("CHECK"), conf(cniVersion="1.2.0")),
    ("check-config-unparsable", cmd("CHECK"), conf(cniVersion="x")),
    ("check-config-too-many-parts", cmd("CHECK"), conf(cniVersion="1.0.0.0")),
    # null reads as absent, as Go's decoder leaves a field alone (cniVersion: 0.1.0)
    ("check-version-null", cmd("CHECK"), b'{"cniVersion":null,"name":"n"}'),
    ("del-version-null", cmd("DEL"), b'{"cniVersion":null,"name":"n","type":"x"}'),
    ("del-null-maps", cmd("DEL"), conf(capabilities=None, runtimeConfig=None, prevResult=None)),
    ("del-null-capability", cmd("DEL"), conf(capabilities={"portMappings": None})),
    # DEL does not depend on prevResult: one of the wrong shape does not fail it
    ("del-prev-result-wrong-shape", cmd("DEL"), conf(prevResult={"ips": "x"})),
    ("del-prev-result-bad-address", cmd("DEL"), conf(prevResult={"ips": [{"address": "x"}]})),
    # unknown commands (case-sensitive), with the full environment
    ("unknown-command", cmd("FOO"), CONF),
    ("unknown-lowercase", cmd("add"), CONF),
    # successful verbs that print nothing
    ("del-ok", cmd("DEL"), CONF),
    ("del-ok-no-netns", cmd("DEL", CNI_NETNS=""), CONF),
]


@pytest.mark.parametrize(("env", "stdin"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_same_bytes_as_go(passthrough: Path, env: dict[str, str], stdin: bytes) -> None:
    # "a\udcff" reaches the process as the byte 0xff (os.fsencode).
    go = execute(GO_TUNING, env, stdin)
    ours = execute(passthrough, env, stdin)
    assert ours == go
    assert go[0] in (0, 1)


@pytest.mark.parametrize("version", ["0.1.0", "0.4.0", "1.0.0"])
def test_version_output_shape_matches_go(passthrough: Path, version: str) -> None:
    # Same format (compact, newline, no other output), different contents (see module doc).
    env = {"CNI_COMMAND": "VERSION"}
    stdin = conf(cniVersion=version)
    go_code, go_out = execute(GO_TUNING, env, stdin)
    code, out = execute(passthrough, env, stdin)
    assert code == go_code == 0
    assert out.endswith(b"\n") and go_out.endswith(b"\n") and out.count(b"\n") == 1
    assert json.loads(out)["supportedVersions"][:-1] == json.loads(go_out)["supportedVersions"]


# -- documented divergences: cnisdk's side ---------------------------------------------------


def test_divergence_version_reports_1_1_0(passthrough: Path) -> None:
    code, out = execute(passthrough, {"CNI_COMMAND": "VERSION"}, b"garbage")
    assert code == 0
    assert out == (
        b'{"cniVersion":"1.1.0","supportedVersions":'
        b'["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}\n'
    )
    assert execute(GO_TUNING, {"CNI_COMMAND": "VERSION"}, b"garbage")[1].startswith(
        b'{"cniVersion":"1.0.0"'
    )


def test_divergence_incompatible_version_lists_1_1_0(passthrough: Path) -> None:
    code, out = execute(passthrough, cmd("ADD"), conf(cniVersion="1.0"))
    assert code == 1
    assert json.loads(out) == {
        "code": 1,
        "msg": "incompatible CNI versions",
        "details": 'config is "1.0", plugin supports '
        '["0.1.0" "0.2.0" "0.3.0" "0.3.1" "0.4.0" "1.0.0" "1.1.0"]',
    }


def test_divergence_check_at_1_1_0_is_allowed(passthrough: Path) -> None:
    assert execute(passthrough, cmd("CHECK"), conf(cniVersion="1.1.0")) == (0, b"")
    code, out = execute(GO_TUNING, cmd("CHECK"), conf(cniVersion="1.1.0"))
    assert (code, json.loads(out)["msg"]) == (1, "plugin version does not allow CHECK")


@pytest.mark.parametrize("command", ["GC", "STATUS"])
def test_divergence_gc_status_checks(passthrough: Path, command: str) -> None:
    only_path = {"CNI_COMMAND": command, "CNI_PATH": "/opt/cni/bin"}
    code, out = execute(passthrough, only_path, conf(cniVersion="1.0.0"))
    assert code == 1
    assert json.loads(out) == {"code": 1, "msg": f"config version does not allow {command}"}
    assert execute(passthrough, only_path, conf(cniVersion="1.1.0")) == (0, b"")
    code, out = execute(passthrough, only_path, conf(cniVersion="9.0.0"))
    assert json.loads(out) == {"code": 1, "msg": f"plugin version does not allow {command}"}
    # Go 1.1.2: an unknown command, after validating containerID.
    code, out = execute(GO_TUNING, only_path, conf(cniVersion="1.0.0"))
    assert (code, json.loads(out)) == (1, {"code": 3, "msg": "missing containerID"})


def test_divergence_invalid_containerid_before_missing_env(passthrough: Path) -> None:
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "a b"}
    code, out = execute(passthrough, env, CONF)
    assert code == 1
    assert json.loads(out) == {
        "code": 4,
        "msg": "invalid characters in containerID",
        "details": "a b",
    }
    go = json.loads(execute(GO_TUNING, env, CONF)[1])
    assert go["msg"] == "required env variables [CNI_NETNS,CNI_IFNAME,CNI_PATH] missing"


@pytest.mark.parametrize("command", ["ADD", "DEL"])
def test_divergence_own_netns_is_refused(passthrough: Path, command: str) -> None:
    # Newest Go skel (CheckNetNS after ADD and DEL) is followed; Go 1.1.2 has no such check.
    # (Go's tuning is not run here: without the check it would act on this host's namespace.)
    prev = {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]}
    stdin = conf(prevResult=prev)
    env = cmd(command, CNI_NETNS="/proc/self/ns/net")
    code, out = execute(passthrough, env, stdin)
    assert code == 1
    assert json.loads(out) == {
        "code": 8,
        "msg": "plugin's netns and netns from CNI_NETNS should not be the same",
    }
    code, out = execute(passthrough, {**env, "CNI_NETNS_OVERRIDE": "true"}, stdin)
    assert code == 0
    if command == "ADD":
        assert json.loads(out)["ips"] == prev["ips"]


def test_own_netns_is_not_checked_for_check_as_in_go(passthrough: Path) -> None:
    stdin = conf(prevResult={"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]})
    env = cmd("CHECK", CNI_NETNS="/proc/self/ns/net")
    assert execute(passthrough, env, stdin) == (0, b"")


def test_divergence_add_without_prev_result(passthrough: Path) -> None:
    code, out = execute(passthrough, cmd("ADD"), CONF)
    assert (code, json.loads(out)) == (1, {"code": 7, "msg": "must be called as chained plugin"})


@pytest.mark.parametrize("prev", [5, "x", [1], True])
def test_divergence_del_ignores_a_prev_result_that_is_not_an_object(
    passthrough: Path, prev: object
) -> None:
    # The spec asks DEL to be best-effort and to tolerate a missing or unusable prevResult;
    # cnisdk drops one that is not an object (and says so on stderr). Go's tuning decodes
    # the whole config into types.NetConf first and fails with 999 (newest Go alike: it is
    # the plugin's decode, not the skel's).
    stdin = conf(prevResult=prev)
    assert execute(passthrough, cmd("DEL"), stdin) == (0, b"")
    code, out = execute(GO_TUNING, cmd("DEL"), stdin)
    assert (code, json.loads(out)["code"]) == (1, 999)
    assert "prevResult" in json.loads(out)["msg"]


@pytest.mark.parametrize("value", ["yes", 1, [True]])
def test_divergence_capabilities_that_are_not_booleans_are_code_7(
    passthrough: Path, value: object
) -> None:
    # Both refuse the config, as Go's map[string]bool does; cnisdk reports a config that does
    # not fit the model as code 7 (a documented deviation), Go's tuning as 999.
    stdin = conf(capabilities={"portMappings": value})
    code, out = execute(passthrough, cmd("DEL"), stdin)
    assert code == 1
    assert json.loads(out)["code"] == 7
    assert json.loads(out)["msg"].startswith("invalid network config: capabilities.portMappings")
    code, out = execute(GO_TUNING, cmd("DEL"), stdin)
    assert (code, json.loads(out)["code"]) == (1, 999)
    assert "capabilities" in json.loads(out)["msg"]


def test_del_ignores_unreadable_prev_result_like_go_tuning(passthrough: Path) -> None:
    stdin = conf(prevResult={"cniVersion": "0.4.0"})
    assert execute(passthrough, cmd("DEL"), stdin) == (0, b"")
    assert execute(GO_TUNING, cmd("DEL"), stdin) == (0, b"")
