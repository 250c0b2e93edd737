"""Import discipline: an exec-mode ``passthrough`` ADD imports only what the request needs.

The launcher's code runs in a fresh ``python -I`` with an ``atexit`` hook that writes
``sys.modules`` to a file, so the set is exactly what a runtime-exec'd plugin process loads.
Timing is the benchmarks' business (``benchmarks/run.py``), not this test's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cnisdk._discovery import get_plugin
from cnisdk._launcher import render_launcher

# Every non-standard-library top-level package the request may load, and must load.
EXPECTED_THIRD_PARTY = {
    "annotated_types",
    "cnisdk",
    "cnisdk_examples",
    "pydantic",
    "pydantic_core",
    "typing_extensions",
    "typing_inspection",
}
# The cnisdk modules the exec path needs: skel, plugin base, the spec data types.
EXPECTED_CNISDK = {
    "cnisdk",
    "cnisdk._files",
    "cnisdk._plugin",
    "cnisdk._skel",
    "cnisdk._version",
    "cnisdk.spec",
    "cnisdk.spec._args",
    "cnisdk.spec._config",
    "cnisdk.spec._errors",
    "cnisdk.spec._convert",
    "cnisdk.spec._json",
    "cnisdk.spec._names",
    "cnisdk.spec._result",
    "cnisdk.spec._result_decode",
    "cnisdk.spec._versions",
}
# Named explicitly so a failure says what crept in.
FORBIDDEN = {
    "pyroute2",
    "httpx",
    "yaml",
    "entrypoints",
    "cnisdk._cli",
    "cnisdk._commands",
    "cnisdk._validate",
    "cnisdk._runtime",
    "cnisdk._invoke",
    "cnisdk._netns",
    "cnisdk._discovery",
    "cnisdk._launcher",
    "cnisdk._agent",
    "cnisdk.testing",
    "anyio._backends._asyncio",
}

PREV_RESULT = {
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/x"}],
    "ips": [{"address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 0}],
    "routes": [{"dst": "0.0.0.0/0"}],
}


def _launcher_body() -> str:
    text = render_launcher(get_plugin("passthrough"), sys.executable)
    shebang, _marker, body = text.split("\n", 2)
    assert shebang == f"#!{sys.executable} -I"
    return body


def _exec_add(tmp_path: Path, version: str) -> tuple[set[str], dict[str, object]]:
    dump = tmp_path / "modules.json"
    hook = (
        "import atexit, json, sys\n"
        f"atexit.register(lambda: open({str(dump)!r}, 'w')"
        ".write(json.dumps(sorted(sys.modules))))\n"
    )
    conf: dict[str, object] = {"cniVersion": version, "name": "net", "type": "passthrough"}
    conf["prevResult"] = (
        {**PREV_RESULT, "cniVersion": version}
        if version >= "1"
        else {
            "cniVersion": version,
            "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/x"}],
            "ips": [{"version": "4", "address": "10.0.0.2/24", "interface": 0}],
        }
    )
    env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "discipline",
        "CNI_NETNS": str(tmp_path / "no-such-netns"),
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/usr/lib/cni",
    }
    done = subprocess.run(
        [sys.executable, "-I", "-c", hook + _launcher_body()],
        input=json.dumps(conf).encode(),
        env=env,
        capture_output=True,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr.decode()
    result = json.loads(done.stdout)
    assert result["cniVersion"] == version
    return set(json.loads(dump.read_text())), result


def _interpreter_baseline() -> set[str]:
    """What ``python -I`` loads before running anything (site, .pth hooks): not ours."""
    done = subprocess.run(
        [sys.executable, "-I", "-c", "import json, sys; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        check=True,
    )
    return set(json.loads(done.stdout))


def _top_level_third_party(modules: set[str]) -> set[str]:
    tops = {name.partition(".")[0] for name in modules - _interpreter_baseline()}
    # sysconfig's platform data module is standard library, but not in stdlib_module_names.
    return {
        name
        for name in tops
        if name not in sys.stdlib_module_names and not name.startswith("_sysconfigdata_")
    }


@pytest.mark.parametrize("version", ["1.0.0", "0.4.0"])
def test_exec_mode_passthrough_add_imports_only_what_it_needs(tmp_path: Path, version: str) -> None:
    modules, _ = _exec_add(tmp_path, version)
    assert _top_level_third_party(modules) == EXPECTED_THIRD_PARTY
    assert {m for m in modules if m.partition(".")[0] == "cnisdk"} == EXPECTED_CNISDK
    crept_in = {m for m in modules if m in FORBIDDEN or m.partition(".")[0] in FORBIDDEN}
    assert crept_in == set()


def test_a_1x_request_never_builds_the_0x_result_validators(tmp_path: Path) -> None:
    """The 0.2/0.4 result families are defined but their pydantic validators are built only
    when a request converts to those versions (``defer_build``)."""
    probe = (
        "import sys\n"
        "from cnisdk.spec import _result\n"
        "from cnisdk._skel import handle_request\n"
        "import asyncio, json\n"
        "from cnisdk_examples.passthrough import Passthrough\n"
        f"conf = {json.dumps({'cniVersion': '1.0.0', 'name': 'n', 'type': 'passthrough'})!r}\n"
        "conf = json.loads(conf)\n"
        f"conf['prevResult'] = json.loads({json.dumps(PREV_RESULT)!r})\n"
        "env = {'CNI_COMMAND': 'ADD', 'CNI_CONTAINERID': 'c', 'CNI_NETNS': '/nonexistent',\n"
        "       'CNI_IFNAME': 'eth0', 'CNI_PATH': '/usr/lib/cni'}\n"
        "r = asyncio.run(handle_request(Passthrough(), env, json.dumps(conf).encode()))\n"
        "assert r.exit_code == 0, r\n"
        "built = sorted(m.__name__ for m in (_result.Result, _result.Result040,\n"
        "    _result.Result020, _result.IPConfig040, _result.Interface040, _result.IPConfig020)\n"
        "    if m.__pydantic_complete__)\n"
        "print(json.dumps(built))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", probe], capture_output=True, check=False, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout) == ["Result"]
