"""Property tests of the exec protocol: whatever arrives, stdout holds one valid document.

For any stdin bytes and any ``CNI_*`` values: the exit code is 0 or 1; stdout is either empty
(only for a successful non-ADD verb, or the about text of an empty ``CNI_COMMAND``) or exactly
one JSON document that is a valid result (exit 0, in the config's version), VERSION info, or a
valid error (exit 1); no traceback ever reaches stdout.
"""

from __future__ import annotations

import io
import json
from typing import Any

import anyio
import pytest
from cnisdk_examples.passthrough import Passthrough
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cnisdk import CNIError, Context, NetConf, Plugin, Response, Result, handle_request
from cnisdk.spec import ALL_VERSIONS, parse_result
from cnisdk.spec._json import dumps_go

COMMANDS = ["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION", "", "add", "FOO"]
ENV_NAMES = [
    "CNI_CONTAINERID",
    "CNI_NETNS",
    "CNI_IFNAME",
    "CNI_ARGS",
    "CNI_PATH",
    "CNI_NETNS_OVERRIDE",
]
VERSIONS = [*ALL_VERSIONS, "", "1.0", "9.9.9", "x", "1.0.0.0"]


def mostly(usual: st.SearchStrategy[Any], *rare: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual`` four times out of five, else one of ``rare``."""
    return st.integers(0, 4).flatmap(lambda i: st.one_of(*rare) if i == 0 else usual)


GOOD_VALUES = {
    "CNI_CONTAINERID": "abc",
    "CNI_NETNS": "/var/run/netns/none",
    "CNI_IFNAME": "eth0",
    "CNI_ARGS": "K8S_POD_NAME=p;IgnoreUnknown=1",
    "CNI_PATH": "/opt/cni/bin",
    "CNI_NETNS_OVERRIDE": "",
}

# Environment values a runtime (or an attacker) could set: valid, empty, weird, huge, and
# undecodable bytes as Python sees them (surrogate escapes).
weird_text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
    max_size=30,
)
env_value = st.one_of(
    st.none(),
    st.just(""),
    weird_text,
    st.sampled_from(
        ["a b", "abc\n", "-a", "ä", "..", "eth0:1", "a\u00a0b", "\x1c", "/proc/self/ns/net"]
    ),
    st.just("x" * 100_000),
    st.binary(max_size=10).map(lambda b: b.decode("utf-8", "surrogateescape")),
)

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), weird_text
)
json_any = st.recursive(
    json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(weird_text, children, max_size=3)
    ),
    max_leaves=8,
)

ip = st.sampled_from(["10.0.0.2/24", "fd00::2/64", "10.0.0.2", "garbage", "::ffff:1.2.3.4/96"])
prev_result = st.one_of(
    json_any,
    st.fixed_dictionaries(
        {},
        optional={
            "cniVersion": st.sampled_from(VERSIONS),
            "interfaces": st.lists(
                st.fixed_dictionaries(
                    {"name": weird_text}, optional={"mac": weird_text, "sandbox": weird_text}
                ),
                max_size=2,
            ),
            "ips": st.lists(
                st.fixed_dictionaries(
                    {"address": ip},
                    optional={
                        "version": st.sampled_from(["4", "6", "", "x"]),
                        "gateway": st.sampled_from(["10.0.0.1", "", "fd00::1", "bad"]),
                        "interface": st.one_of(st.integers(-2, 3), weird_text),
                    },
                ),
                max_size=3,
            ),
            "routes": st.lists(
                st.fixed_dictionaries(
                    {"dst": st.sampled_from(["0.0.0.0/0", "::/0", "192.168.0.0/16", "bad"])},
                    optional={"gw": ip},
                ),
                max_size=2,
            ),
            "dns": st.one_of(json_any, st.fixed_dictionaries({"nameservers": st.lists(ip)})),
            "ip4": st.fixed_dictionaries({"ip": ip}),
        },
    ),
)
config = st.fixed_dictionaries(
    {},
    optional={
        "cniVersion": mostly(st.sampled_from(VERSIONS), json_any),
        "name": mostly(
            st.sampled_from(["n", "my-net_1.x"]), st.sampled_from(["", "a b"]), json_any
        ),
        "type": st.just("passthrough"),
        "prevResult": prev_result,
        "runtimeConfig": json_any,
        "capabilities": json_any,
        "args": json_any,
        "cni.dev/valid-attachments": json_any,
        "NAME": weird_text,
        "CNIVERSION": st.sampled_from(VERSIONS),
    },
)
good_config = st.builds(
    lambda version, prev: {"cniVersion": version, "name": "n", "type": "x", "prevResult": prev},
    st.sampled_from(ALL_VERSIONS),
    prev_result,
).map(
    lambda d: (
        {**d, "prevResult": {"cniVersion": d["cniVersion"], **d["prevResult"]}}
        if isinstance(d["prevResult"], dict) and "cniVersion" not in d["prevResult"]
        else d
    )
)
stdin = st.one_of(
    good_config.map(lambda d: json.dumps(d).encode()),
    good_config.map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=200),
    config.map(lambda d: json.dumps(d).encode()),
    config.map(lambda d: json.dumps(d, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    json_any.map(lambda d: json.dumps(d).encode()),
    st.sampled_from([b"", b"null", b"{}", b"\xef\xbb\xbf{}", b'{"name":"n"} x', b"[1 2]"]),
)


@st.composite
def environments(draw: st.DrawFn) -> dict[str, str]:
    env: dict[str, str] = {}
    command = draw(mostly(st.sampled_from(COMMANDS), weird_text))
    if command or draw(st.booleans()):
        env["CNI_COMMAND"] = command
    for name in ENV_NAMES:
        value = draw(mostly(st.just(GOOD_VALUES[name]), env_value))
        if value is not None:
            env[name] = value
    return env


class Exploding(Plugin[NetConf]):
    """Raises whatever it was told to, from every verb."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    async def add(self, ctx: Context[NetConf]) -> Result:
        raise self.exc

    async def delete(self, ctx: Context[NetConf]) -> None:
        raise self.exc

    async def check(self, ctx: Context[NetConf]) -> None:
        raise self.exc

    async def gc(self, ctx: Context[NetConf]) -> None:
        raise self.exc

    async def status(self, ctx: Context[NetConf]) -> None:
        raise self.exc


exceptions = st.one_of(
    st.builds(RuntimeError, weird_text),
    st.builds(ValueError, env_value.filter(lambda v: v is not None)),
    st.builds(KeyError, weird_text),
    st.builds(OSError, st.integers(0, 200), weird_text),
    st.builds(
        CNIError,
        st.integers(0, 2**32),
        env_value.filter(lambda v: v is not None),
        env_value.filter(lambda v: v is not None),
    ),
    st.builds(ZeroDivisionError),
    st.just(Exception("line one\n  line two\n\nline three")),
)


def config_version(data: bytes) -> str:
    doc = json.loads(data)
    version = ""
    for key, value in doc.items():
        if key.lower() == "cniversion":
            version = value
    return version or "0.1.0"


def serve(plugin: Plugin[Any], env: dict[str, str], data: bytes) -> Response:
    return anyio.run(
        lambda: handle_request(plugin, env, data, log_stream=io.StringIO()), backend="asyncio"
    )


def check_response(response: Response, env: dict[str, str], data: bytes) -> None:
    command = env.get("CNI_COMMAND", "")
    code = json.loads(response.stdout).get("code") if response.exit_code == 1 else 0
    event(f"{command if command in COMMANDS else '?'} exit={response.exit_code} code={code}")
    assert response.exit_code in (0, 1)
    out = response.stdout
    assert b"Traceback" not in out
    if not out:
        assert response.exit_code == 0
        assert command not in ("ADD", "VERSION")
        return
    doc = json.loads(out)  # exactly one document: trailing data would fail here
    if response.exit_code == 1:
        assert isinstance(doc, dict)
        assert set(doc) <= {"code", "msg", "details"}
        assert isinstance(doc["code"], int) and doc["code"] >= 0
        assert isinstance(doc["msg"], str)
        assert isinstance(doc.get("details", ""), str)
        assert doc.get("details", "x") != ""  # omitted when empty, as Go does
        # Go's MarshalIndent bytes (undecodable env bytes come out as a \ufffd escape).
        assert out == dumps_go(doc) or b"\\ufffd" in out
    elif command == "VERSION":
        assert out.endswith(b"\n")
        assert set(doc) == {"cniVersion", "supportedVersions"}
    else:
        assert command == "ADD"
        assert not out.endswith(b"\n")
        parse_result(out, config_version(data))


SETTINGS = settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example],
)


@SETTINGS
@given(env=environments(), data=stdin)
def test_passthrough_always_answers_with_one_document(env: dict[str, str], data: bytes) -> None:
    check_response(serve(Passthrough(), env, data), env, data)


@SETTINGS
@given(env=environments(), data=stdin, exc=exceptions)
def test_plugin_exceptions_become_errors(
    env: dict[str, str], data: bytes, exc: BaseException
) -> None:
    response = serve(Exploding(exc), env, data)
    check_response(response, env, data)
    assert response.exit_code == 1 or env.get("CNI_COMMAND", "") in ("", "VERSION")


VALID_CONFIG = b'{"cniVersion":"1.0.0","name":"n","prevResult":{"cniVersion":"1.0.0"}}'


@settings(max_examples=100, deadline=None)
@given(exc=exceptions, command=st.sampled_from(["ADD", "DEL", "CHECK"]))
def test_exceptions_reach_the_runtime_as_one_line(exc: BaseException, command: str) -> None:
    env = {**GOOD_VALUES, "CNI_COMMAND": command}
    response = serve(Exploding(exc), env, VALID_CONFIG)
    assert response.exit_code == 1
    doc = json.loads(response.stdout)
    if isinstance(exc, CNIError):
        assert doc["code"] == exc.code
    else:
        assert doc["code"] == 999
        assert "\n" not in doc["msg"] and doc["msg"]


DEEP = 9000  # within Go's limit of 10000 nested values
BASE_ENV = {
    "CNI_CONTAINERID": "c1",
    "CNI_NETNS": "/var/run/netns/nonexistent",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/dev/null",
}


def _deep_array(depth: int) -> str:
    return "[" * depth + "]" * depth


def _deep_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
@pytest.mark.parametrize("where", ["prevResult", "runtimeConfig", "args", "custom"])
def test_deep_nesting_that_go_accepts_is_accepted(command: str, where: str) -> None:
    prev = '{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24"}]}'
    fields = {"prevResult": prev, where: _deep_object(DEEP)}
    if where == "prevResult":
        fields["prevResult"] = '{"cniVersion":"1.0.0","x":' + _deep_array(DEEP) + "}"
    body = ",".join(f'"{k}":{v}' for k, v in fields.items())
    data = ('{"cniVersion":"1.0.0","name":"n","type":"passthrough",' + body + "}").encode()
    env = {**BASE_ENV, "CNI_COMMAND": command}
    response = serve(Passthrough(), env, data)
    assert response.exit_code == 0, response.stdout


def test_nesting_deeper_than_go_accepts_is_gos_error() -> None:
    data = ('{"cniVersion":"1.0.0","name":"n","x":' + _deep_array(10001) + "}").encode()
    response = serve(Passthrough(), {**BASE_ENV, "CNI_COMMAND": "ADD"}, data)
    assert response.exit_code == 1
    error = json.loads(response.stdout)
    assert error["code"] == 6 and "exceeded max depth" in error["msg"]
