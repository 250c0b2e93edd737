"""The exec protocol against Go skel's observable behaviour."""

from __future__ import annotations

import functools
import io
import json
import os
from typing import Any

import anyio
import pytest

from cnisdk import CNIError, Context, NetConf, Plugin, Result, handle_request

GO_VERSIONS = ("0.3.1", "0.4.0", "1.0.0")
BASE_ENV = {
    "CNI_CONTAINERID": "abc",
    "CNI_NETNS": "/x",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/opt",
}


class Recorder(Plugin[NetConf]):
    """Records what each verb saw; behaviour set per test."""

    supported_versions = GO_VERSIONS
    about = "CNI plugin x v1"

    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.calls: list[tuple[str, Context[NetConf]]] = []

    async def add(self, ctx: Context[NetConf]) -> Result:
        self.calls.append(("ADD", ctx))
        if self.fail:
            raise self.fail
        return ctx.prev_result or Result(cniVersion="1.1.0")

    async def delete(self, ctx: Context[NetConf]) -> None:
        self.calls.append(("DEL", ctx))
        if self.fail:
            raise self.fail

    async def check(self, ctx: Context[NetConf]) -> None:
        self.calls.append(("CHECK", ctx))

    async def gc(self, ctx: Context[NetConf]) -> None:
        self.calls.append(("GC", ctx))

    async def status(self, ctx: Context[NetConf]) -> None:
        self.calls.append(("STATUS", ctx))


class AllVersions(Recorder):
    supported_versions = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")


def call(
    plugin: Plugin[Any], env: dict[str, str], stdin: bytes | str = b""
) -> tuple[bytes, bytes, int]:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    response = anyio.run(handle_request, plugin, env, data)
    return response.stdout, response.stderr, response.exit_code


def error_of(stdout: bytes) -> dict[str, Any]:
    doc = json.loads(stdout)
    assert isinstance(doc, dict)
    return doc


def conf(version: str | None = "1.0.0", **extra: Any) -> str:
    doc: dict[str, Any] = {"name": "n", "type": "x", **extra}
    if version is not None:
        doc["cniVersion"] = version
    return json.dumps(doc)


# --- environment per verb ----------------------------------------------------------------

REQUIRED = {
    "ADD": ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
    "CHECK": ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
    "DEL": ["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
    "GC": ["CNI_PATH"],
    "STATUS": ["CNI_PATH"],
}


@pytest.mark.parametrize("command", sorted(REQUIRED))
def test_each_verb_names_exactly_its_missing_variables(command: str) -> None:
    stdout, _, code = call(Recorder(), {"CNI_COMMAND": command}, conf())
    assert code == 1
    missing = ",".join(REQUIRED[command])
    assert error_of(stdout) == {"code": 4, "msg": f"required env variables [{missing}] missing"}


@pytest.mark.parametrize("command", sorted(REQUIRED))
@pytest.mark.parametrize("dropped", ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"])
def test_empty_value_counts_as_unset(command: str, dropped: str) -> None:
    env = {**BASE_ENV, "CNI_COMMAND": command, dropped: ""}
    stdout, _, code = call(AllVersions(), env, conf("1.1.0"))
    if dropped in REQUIRED[command]:
        assert code == 1
        assert error_of(stdout) == {
            "code": 4,
            "msg": f"required env variables [{dropped}] missing",
        }
    else:
        assert code == 0, stdout


def test_del_without_netns_runs_callback_with_empty_netns() -> None:
    plugin = Recorder()
    env = {k: v for k, v in BASE_ENV.items() if k != "CNI_NETNS"}
    stdout, _, code = call(plugin, {**env, "CNI_COMMAND": "DEL"}, conf())
    assert (stdout, code) == (b"", 0)
    [(verb, ctx)] = plugin.calls
    assert verb == "DEL"
    assert ctx.netns_path == ""
    assert ctx.netns is None


# --- edge cases where Go's behaviour is easy to miss -------------------------------------


def test_no_env_prints_about_to_stderr() -> None:
    stdout, stderr, code = call(Recorder(), {}, b"")
    assert (stdout, code) == (b"", 0)
    assert stderr == b"CNI plugin x v1\nCNI protocol versions supported: 0.3.1, 0.4.0, 1.0.0\n"


def test_version_ignores_stdin_and_env() -> None:
    stdout, _, code = call(Recorder(), {"CNI_COMMAND": "VERSION"}, b"\x00garbage{")
    assert code == 0
    assert stdout == (b'{"cniVersion":"1.1.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}\n')


def test_version_never_reads_stdin() -> None:
    def explode() -> bytes:
        raise AssertionError("stdin read for VERSION")

    response = anyio.run(handle_request, Recorder(), {"CNI_COMMAND": "VERSION"}, explode)
    assert response.exit_code == 0


def test_add_with_only_command() -> None:
    stdout, _, code = call(Recorder(), {"CNI_COMMAND": "ADD"}, b"")
    assert code == 1
    assert stdout == (
        b'{\n    "code": 4,\n    "msg": "required env variables '
        b'[CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH] missing"\n}'
    )


def test_missing_version_means_010() -> None:
    stdout, _, code = call(Recorder(), {**BASE_ENV, "CNI_COMMAND": "ADD"}, '{"name":"n"}')
    assert code == 1
    assert error_of(stdout) == {
        "code": 1,
        "msg": "incompatible CNI versions",
        "details": 'config is "0.1.0", plugin supports ["0.3.1" "0.4.0" "1.0.0"]',
    }


def test_version_match_is_exact() -> None:
    stdout, _, code = call(Recorder(), {**BASE_ENV, "CNI_COMMAND": "ADD"}, conf("1.0"))
    assert code == 1
    assert error_of(stdout)["details"].startswith('config is "1.0"')


@pytest.mark.parametrize(
    ("version", "msg"),
    [
        ("0.3.1", "config version does not allow CHECK"),
        ("1.2.0", "plugin version does not allow CHECK"),
    ],
)
def test_check_version_gate(version: str, msg: str) -> None:
    stdout, _, code = call(Recorder(), {**BASE_ENV, "CNI_COMMAND": "CHECK"}, conf(version))
    assert code == 1
    assert error_of(stdout) == {"code": 1, "msg": msg}


def test_check_runs_at_supported_version() -> None:
    plugin = Recorder()
    stdout, _, code = call(plugin, {**BASE_ENV, "CNI_COMMAND": "CHECK"}, conf("0.4.0"))
    assert (stdout, code) == (b"", 0)
    assert [verb for verb, _ in plugin.calls] == ["CHECK"]


def test_empty_stdin_on_del() -> None:
    stdout, _, code = call(Recorder(), {**BASE_ENV, "CNI_COMMAND": "DEL"}, b"")
    assert code == 1
    assert error_of(stdout) == {
        "code": 6,
        "msg": "error unmarshall network config: unexpected end of JSON input",
    }


def test_non_string_version_is_a_decoding_failure() -> None:
    stdout, _, code = call(
        Recorder(), {**BASE_ENV, "CNI_COMMAND": "DEL"}, '{"cniVersion":4,"name":"n"}'
    )
    assert code == 1
    doc = error_of(stdout)
    assert doc["code"] == 6
    assert doc["msg"].startswith("decoding version from network config: json: cannot unmarshal")


def test_prev_result_printed_in_config_version() -> None:
    prev = {"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.0.0.2/24"}]}
    stdout, _, code = call(
        Recorder(), {**BASE_ENV, "CNI_COMMAND": "ADD"}, conf("0.4.0", prevResult=prev)
    )
    assert code == 0
    assert json.loads(stdout) == {
        "cniVersion": "0.4.0",
        "ips": [{"version": "4", "address": "10.0.0.2/24"}],
        "dns": {},
    }


def test_prev_result_without_version_inherits_config_version() -> None:
    prev = {"ips": [{"version": "4", "address": "10.0.0.2/24"}]}
    stdout, _, code = call(
        Recorder(), {**BASE_ENV, "CNI_COMMAND": "ADD"}, conf("0.4.0", prevResult=prev)
    )
    assert code == 0
    assert json.loads(stdout)["cniVersion"] == "0.4.0"


def test_prev_result_of_other_family_is_refused_with_999() -> None:
    prev = {"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.0.0.2/24"}]}
    stdout, _, code = call(
        Recorder(), {**BASE_ENV, "CNI_COMMAND": "ADD"}, conf("1.0.0", prevResult=prev)
    )
    assert code == 1
    doc = error_of(stdout)
    assert doc["code"] == 999
    assert doc["msg"].startswith("could not parse prevResult: result type supports [1.0.0")
    assert doc["msg"].endswith('but unmarshalled CNIVersion is "0.4.0"')


@pytest.mark.parametrize(
    ("container_id", "expected"),
    [
        ("abc\n", {"code": 4, "msg": "invalid characters in containerID", "details": "abc\n"}),
        ("-a", {"code": 4, "msg": "invalid characters in containerID", "details": "-a"}),
        ("a b", {"code": 4, "msg": "invalid characters in containerID", "details": "a b"}),
        ("ä", {"code": 4, "msg": "invalid characters in containerID", "details": "ä"}),
        ("A-b_c.d", None),
    ],
)
def test_container_id_rules(container_id: str, expected: dict[str, Any] | None) -> None:
    env = {**BASE_ENV, "CNI_COMMAND": "ADD", "CNI_CONTAINERID": container_id}
    stdout, _, code = call(Recorder(), env, conf())
    if expected is None:
        assert code == 0, stdout
    else:
        assert (error_of(stdout), code) == (expected, 1)


IFNAME_TOO_LONG = {
    "code": 4,
    "msg": "interface name is too long",
    "details": "interface name should be less than 16 characters",
}
IFNAME_BAD_CHARS = {"code": 4, "msg": "interface name contains / or : or whitespace characters"}


@pytest.mark.parametrize(
    ("ifname", "expected"),
    [
        ("123456789012345", None),
        ("1234567890123456", IFNAME_TOO_LONG),
        ("ä1234567890123", None),
        ("ä12345678901234", IFNAME_TOO_LONG),
        ("\x1c", None),
        ("a\u00a0b", IFNAME_BAD_CHARS),
        ("eth0:1", IFNAME_BAD_CHARS),
        ("a/b", IFNAME_BAD_CHARS),
        ("...", None),
        ("..", {"code": 4, "msg": "interface name is . or .."}),
        (".", {"code": 4, "msg": "interface name is . or .."}),
    ],
)
def test_interface_name_rules(ifname: str, expected: dict[str, Any] | None) -> None:
    env = {**BASE_ENV, "CNI_COMMAND": "ADD", "CNI_IFNAME": ifname}
    stdout, _, code = call(Recorder(), env, conf())
    if expected is None:
        assert code == 0, stdout
    else:
        assert (error_of(stdout), code) == (expected, 1)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("", {"code": 7, "msg": "missing network name"}),
        (
            "bad name",
            {"code": 7, "msg": "invalid characters found in network name", "details": "bad name"},
        ),
    ],
)
def test_network_name_rules(name: str, expected: dict[str, Any]) -> None:
    stdin = json.dumps({"cniVersion": "1.0.0", "name": name})
    stdout, _, code = call(Recorder(), {**BASE_ENV, "CNI_COMMAND": "ADD"}, stdin)
    assert (error_of(stdout), code) == (expected, 1)


def test_plain_exception_becomes_999() -> None:
    stdout, _, code = call(
        Recorder(RuntimeError("boom")), {**BASE_ENV, "CNI_COMMAND": "ADD"}, conf()
    )
    assert code == 1
    assert stdout == b'{\n    "code": 999,\n    "msg": "boom"\n}'


def test_multiline_exception_message_is_one_line() -> None:
    plugin = Recorder(RuntimeError("first\nsecond"))
    stdout, _, _ = call(plugin, {**BASE_ENV, "CNI_COMMAND": "ADD"}, conf())
    assert error_of(stdout) == {"code": 999, "msg": "first second"}


def test_cni_error_printed_verbatim() -> None:
    plugin = Recorder(CNIError(11, "try later", "busy"))
    stdout, _, code = call(plugin, {**BASE_ENV, "CNI_COMMAND": "ADD"}, conf())
    assert code == 1
    assert stdout == b'{\n    "code": 11,\n    "msg": "try later",\n    "details": "busy"\n}'


def test_keys_match_case_insensitively() -> None:
    plugin = Recorder()
    stdin = '{"CNIVERSION":"0.4.0","NAME":"mynet","type":"x"}'
    stdout, _, code = call(plugin, {**BASE_ENV, "CNI_COMMAND": "ADD"}, stdin)
    assert code == 0, stdout
    [(_, ctx)] = plugin.calls
    assert (ctx.config.name, ctx.config.cni_version) == ("mynet", "0.4.0")


def test_duplicate_keys_last_wins() -> None:
    plugin = Recorder()
    stdin = '{"cniVersion":"0.4.0","name":"first","name":"second","type":"x"}'
    _, _, code = call(plugin, {**BASE_ENV, "CNI_COMMAND": "ADD"}, stdin)
    assert code == 0
    assert plugin.calls[0][1].config.name == "second"


def test_unknown_config_keys_reach_plugin_unchanged() -> None:
    plugin = Recorder()
    _, _, code = call(plugin, {**BASE_ENV, "CNI_COMMAND": "ADD"}, conf(custom={"a": 1}))
    assert code == 0
    config = plugin.calls[0][1].config
    assert config.model_extra == {"custom": {"a": 1}}
    assert config.to_dict() == {"cniVersion": "1.0.0", "name": "n", "type": "x", "custom": {"a": 1}}


def test_gc_needs_110_config() -> None:
    stdout, _, code = call(AllVersions(), {"CNI_COMMAND": "GC", "CNI_PATH": "/opt"}, conf("1.0.0"))
    assert (error_of(stdout), code) == ({"code": 1, "msg": "config version does not allow GC"}, 1)


def test_gc_null_attachments_is_empty() -> None:
    plugin = AllVersions()
    stdin = conf("1.1.0", **{"cni.dev/valid-attachments": None})
    stdout, _, code = call(plugin, {"CNI_COMMAND": "GC", "CNI_PATH": "/opt"}, stdin)
    assert (stdout, code) == (b"", 0)
    assert plugin.calls[0][1].valid_attachments == ()


def test_gc_reads_valid_attachments_then_legacy_key() -> None:
    plugin = AllVersions()
    attachments = [{"containerID": "c1", "ifname": "eth0"}]
    stdin = conf("1.1.0", **{"cni.dev/attachments": attachments})
    call(plugin, {"CNI_COMMAND": "GC", "CNI_PATH": "/opt"}, stdin)
    [(_, ctx)] = plugin.calls
    assert [(a.container_id, a.ifname) for a in ctx.valid_attachments] == [("c1", "eth0")]


def test_status_is_gated_like_gc() -> None:
    env = {"CNI_COMMAND": "STATUS", "CNI_PATH": "/opt"}
    stdout, _, code = call(Recorder(), env, conf("1.1.0"))
    assert (error_of(stdout), code) == (
        {"code": 1, "msg": "plugin version does not allow STATUS"},
        1,
    )
    stdout, _, code = call(AllVersions(), env, conf("1.1.0"))
    assert (stdout, code) == (b"", 0)


def test_unknown_command_is_case_sensitive() -> None:
    stdout, _, code = call(Recorder(), {**BASE_ENV, "CNI_COMMAND": "add"}, conf())
    assert (error_of(stdout), code) == ({"code": 4, "msg": "unknown CNI_COMMAND: add"}, 1)


OWN_NETNS_ERROR = {
    "code": 8,
    "msg": "plugin's netns and netns from CNI_NETNS should not be the same",
}


@pytest.mark.parametrize("command", ["ADD", "DEL"])
def test_own_netns_is_refused_before_the_callback(command: str) -> None:
    plugin = Recorder()
    env = {**BASE_ENV, "CNI_COMMAND": command, "CNI_NETNS": "/proc/self/ns/net"}
    stdout, _, code = call(plugin, env, conf())
    assert (error_of(stdout), code) == (OWN_NETNS_ERROR, 1)
    assert plugin.calls == []


def test_own_netns_is_not_checked_for_check() -> None:
    # Newest Go skel runs CheckNetNS after ADD and DEL only.
    plugin = NetnsUser()
    env = {**BASE_ENV, "CNI_COMMAND": "CHECK", "CNI_NETNS": "/proc/self/ns/net"}
    assert call(plugin, env, conf())[1:] == (b"", 0)
    assert plugin.seen == [("CHECK", False, True)]


@pytest.mark.parametrize(
    ("value", "override"),
    [("1", True), ("true", True), ("TRUE", True), ("True", True), ("tRuE", True),
     ("", False), ("0", False), ("yes", False), ("false", False), (" true", False),
     ("true ", False), ("1 ", False), ("on", False)],
)  # fmt: skip
def test_netns_override_follows_go(value: str, override: bool) -> None:
    # Go: strings.ToUpper(v) == "TRUE" || v == "1", nothing stripped.
    plugin = NetnsUser()
    env = {
        **BASE_ENV,
        "CNI_COMMAND": "ADD",
        "CNI_NETNS": "/proc/self/ns/net",
        "CNI_NETNS_OVERRIDE": value,
    }
    stdout, _, code = call(plugin, env, conf())
    if override:
        assert code == 0, stdout
        assert plugin.seen == [("ADD", True, True)]
    else:
        assert (error_of(stdout), code) == (OWN_NETNS_ERROR, 1)
        assert plugin.seen == []


@pytest.mark.parametrize("command", ["ADD", "DEL"])
def test_overridden_own_netns_reaches_the_plugin_as_a_usable_handle(command: str) -> None:
    # The skel decided the override; ctx.netns must not refuse the same request again.
    plugin = NetnsUser()
    env = {
        **BASE_ENV,
        "CNI_COMMAND": command,
        "CNI_NETNS": "/proc/self/ns/net",
        "CNI_NETNS_OVERRIDE": "1",
    }
    stdout, _, code = call(plugin, env, conf())
    assert code == 0, stdout
    assert plugin.seen == [(command, True, True)]


class NetnsUser(Recorder):
    """Opens ``ctx.netns`` and runs code in it; records (verb, override, ran in it)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, bool, bool]] = []

    async def _use(self, ctx: Context[NetConf]) -> None:
        inside = await ctx.require_netns().run(os.stat, "/proc/thread-self/ns/net")
        target = os.stat(ctx.netns_path)
        same = (inside.st_dev, inside.st_ino) == (target.st_dev, target.st_ino)
        self.seen.append((ctx.command, ctx.request.netns_override, same))

    async def add(self, ctx: Context[NetConf]) -> Result:
        await self._use(ctx)
        return Result(cniVersion="1.1.0")

    async def delete(self, ctx: Context[NetConf]) -> None:
        await self._use(ctx)

    async def check(self, ctx: Context[NetConf]) -> None:
        await self._use(ctx)


def test_chained_plugin_requires_prev_result() -> None:
    class Chained(Recorder):
        chained = True

    stdout, _, code = call(Chained(), {**BASE_ENV, "CNI_COMMAND": "ADD"}, conf())
    assert (error_of(stdout), code) == ({"code": 7, "msg": "must be called as chained plugin"}, 1)


class Requirer(AllVersions):
    """Every verb calls one of Context's require_* methods; records what it got."""

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what
        self.got: list[object] = []

    async def _require(self, ctx: Context[NetConf]) -> None:
        if self.what == "prev_result":
            self.got.append(ctx.require_prev_result())
        else:
            self.got.append(ctx.require_netns().path)

    async def add(self, ctx: Context[NetConf]) -> Result:
        await self._require(ctx)
        return Result(cniVersion="1.1.0")

    async def delete(self, ctx: Context[NetConf]) -> None:
        await self._require(ctx)

    async def check(self, ctx: Context[NetConf]) -> None:
        await self._require(ctx)

    async def gc(self, ctx: Context[NetConf]) -> None:
        await self._require(ctx)


@pytest.mark.parametrize(
    ("command", "msg"),
    [("ADD", "must be called as chained plugin"), ("CHECK", "Required prevResult missing"),
     ("DEL", "Required prevResult missing")],
)  # fmt: skip
def test_require_prev_result_refuses_with_gos_words(command: str, msg: str) -> None:
    stdout, _, code = call(Requirer("prev_result"), {**BASE_ENV, "CNI_COMMAND": command}, conf())
    assert (error_of(stdout), code) == ({"code": 7, "msg": msg}, 1)
    plugin = Requirer("prev_result")
    prev = {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]}
    env = {**BASE_ENV, "CNI_COMMAND": command, "CNI_NETNS": "/proc/self/ns/net"}
    env["CNI_NETNS_OVERRIDE"] = "1"
    assert call(plugin, env, conf(prevResult=prev))[2] == 0
    [got] = plugin.got
    assert isinstance(got, Result) and got.ips[0].address == "10.0.0.2/24"


def test_require_netns() -> None:
    require = Requirer("netns")
    del_env = {**BASE_ENV, "CNI_COMMAND": "DEL", "CNI_NETNS": ""}
    stdout, _, code = call(require, del_env, conf())
    missing = {"code": 4, "msg": "required env variables [CNI_NETNS] missing"}
    assert (error_of(stdout), code) == (missing, 1)
    gone = "/var/run/netns/cnisdk-test-never-there"
    stdout, _, code = call(require, {**del_env, "CNI_NETNS": gone}, conf())
    assert (error_of(stdout), code) == (
        {
            "code": 999,
            "msg": f'failed to open netns "{gone}": failed to Statfs "{gone}": '
            "no such file or directory",
        },
        1,
    )
    gc_env = {"CNI_COMMAND": "GC", "CNI_PATH": "/opt"}
    stdout, _, code = call(Requirer("netns"), gc_env, conf("1.1.0"))
    assert (error_of(stdout), code) == (missing, 1)
    for command in ("ADD", "CHECK", "DEL"):
        env = {**BASE_ENV, "CNI_COMMAND": command, "CNI_NETNS": "/proc/self/ns/net"}
        assert call(require, {**env, "CNI_NETNS_OVERRIDE": "true"}, conf())[2] == 0
    assert require.got == ["/proc/self/ns/net"] * 3


def test_config_model_errors_name_the_field() -> None:
    class Typed(NetConf):
        mtu: int = 1500

    class TypedPlugin(Recorder, Plugin[Typed]):  # type: ignore[misc]
        config_model = Typed

    stdout, _, code = call(TypedPlugin(), {**BASE_ENV, "CNI_COMMAND": "ADD"}, conf(mtu="big"))
    assert code == 1
    doc = error_of(stdout)
    assert doc["code"] == 7
    assert doc["msg"].startswith("invalid network config: mtu:")


def test_cni_args_parsed_lazily_with_go_errors() -> None:
    seen: list[Any] = []

    class ArgsReader(Recorder):
        async def add(self, ctx: Context[NetConf]) -> Result:
            seen.append(dict(ctx.args))
            return Result(cniVersion="1.1.0")

    env = {**BASE_ENV, "CNI_COMMAND": "ADD", "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=p;X=a=b"}
    _, _, code = call(ArgsReader(), env, conf())
    assert code == 0
    assert seen == [{"IgnoreUnknown": "1", "K8S_POD_NAME": "p", "X": "a=b"}]

    env["CNI_ARGS"] = "K=V;"
    stdout, _, code = call(ArgsReader(), env, conf())
    assert (error_of(stdout), code) == ({"code": 999, "msg": 'ARGS: invalid pair ""'}, 1)


def test_null_version_is_absent_in_the_gate_and_the_model() -> None:
    # Go: a null leaves the string field "" (0.1.0); not a type error.
    plugin = AllVersions()
    env = {**BASE_ENV, "CNI_COMMAND": "DEL"}
    assert call(plugin, env, '{"cniVersion":null,"name":"n"}') == (b"", b"", 0)
    [(_, ctx)] = plugin.calls
    assert ctx.cni_version == "0.1.0"
    stdout, _, code = call(Recorder(), env, '{"cniVersion":null,"name":"n"}')
    assert code == 1
    assert error_of(stdout)["details"].startswith('config is "0.1.0"')
    # A null after another spelling of the key leaves the earlier value, as in Go.
    plugin = AllVersions()
    assert call(plugin, env, '{"cniVersion":"0.4.0","CNIVERSION":null,"name":"n"}')[2] == 0
    assert plugin.calls[0][1].cni_version == "0.4.0"


@pytest.mark.parametrize(
    "prev",
    [5, "x", [1], True, {"ips": "x"}, {"cniVersion": 5}, {"cniVersion": "9.9.9"},
     {"ips": [{"address": "not-an-address"}]}],
)  # fmt: skip
def test_del_is_best_effort_whatever_prev_result_holds(prev: Any) -> None:
    plugin = Recorder()
    log = io.StringIO()
    env = {**BASE_ENV, "CNI_COMMAND": "DEL"}
    stdin = conf(prevResult=prev).encode()
    response = anyio.run(functools.partial(handle_request, plugin, env, stdin, log_stream=log))
    assert (response.stdout, response.exit_code) == (b"", 0)
    [(verb, ctx)] = plugin.calls
    assert (verb, ctx.prev_result) == ("DEL", None)
    assert "ignoring unreadable prevResult on DEL" in log.getvalue()


@pytest.mark.parametrize("command", ["ADD", "CHECK"])
def test_non_object_prev_result_fails_add_and_check(command: str) -> None:
    stdout, _, code = call(Recorder(), {**BASE_ENV, "CNI_COMMAND": command}, conf(prevResult=5))
    assert code == 1
    assert error_of(stdout)["code"] == 7
    assert error_of(stdout)["msg"].startswith("invalid network config: prevResult")


@pytest.mark.parametrize("value", ["yes", "true", 1, 0, [], {}])
def test_capabilities_must_be_booleans(value: Any) -> None:
    # Go decodes them into map[string]bool; anything else is a config error.
    env = {**BASE_ENV, "CNI_COMMAND": "DEL"}
    stdout, _, code = call(Recorder(), env, conf(capabilities={"portMappings": value}))
    assert code == 1
    assert error_of(stdout)["code"] == 7
    assert error_of(stdout)["msg"].startswith("invalid network config: capabilities.portMappings")


def test_null_capabilities_read_as_go_does() -> None:
    plugin = Recorder()
    env = {**BASE_ENV, "CNI_COMMAND": "DEL"}
    assert call(plugin, env, conf(capabilities={"a": True, "b": None}))[2] == 0
    assert call(plugin, env, conf(capabilities=None, runtimeConfig=None))[2] == 0
    assert [ctx.config.capabilities for _, ctx in plugin.calls] == [{"a": True, "b": False}, {}]
    assert plugin.calls[1][1].runtime_config == {}


def test_unreadable_prev_result_does_not_block_del() -> None:
    plugin = Recorder()
    prev = {"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.0.0.2/24"}]}
    stdout, _, code = call(
        plugin, {**BASE_ENV, "CNI_COMMAND": "DEL"}, conf("1.0.0", prevResult=prev)
    )
    assert (stdout, code) == (b"", 0)
    [(verb, ctx)] = plugin.calls
    assert (verb, ctx.prev_result) == ("DEL", None)
