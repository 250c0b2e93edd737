"""``cnisdk schema TYPE``: JSON Schema 2020-12 for cnisdk and reference plugins, checked with
``jsonschema`` against the good and bad configs of the corpus."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from cnisdk._cli import main
from cnisdk._validate._reference import REFERENCE_PLUGINS
from cnisdk._validate._schema import DIALECT, plain_text

from .conftest import CORPUS

GOOD = CORPUS / "good"
BAD = CORPUS / "bad"
CNISDK_TYPES = ("passthrough", "istio-redirect")  # registered by the autouse fixture
TYPES = (*CNISDK_TYPES, *REFERENCE_PLUGINS)
IPAM_TYPES = {t for t, p in REFERENCE_PLUGINS.items() if p.kind == "ipam"}
# Bad files whose mistake is one a schema can state (a type, a range, a choice, a required
# key): the schema refuses them. Mistakes across fields (a range outside its subnet) and
# values only a parser judges (an IP address) are left to validate.
SCHEMA_REFUSES = {
    "model-field.conflist": 1,
    "ref-bridge-bool-as-string.conflist": 0,
    "ref-bridge-vlan-range.conflist": 0,
    "ref-bridge-mtu.conflist": 0,
    "ref-macvlan-mode.conflist": 0,
    "ref-vlan-no-master.conflist": 0,
    "ref-tap-owner.conflist": 0,
    "ref-portmap-mark-bit.conflist": 1,
    "ref-bandwidth-negative.conflist": 1,
    "ref-tuning-sysctl-value.conflist": 1,
    "ref-sbr-table.conflist": 1,
    "ref-vrf-name.conflist": 1,
}


def schema_of(plugin_type: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["schema", plugin_type]) == 0
    schema: dict[str, Any] = json.loads(capsys.readouterr().out)
    return schema


def objects(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [("", schema), *schema.get("$defs", {}).items()]


@pytest.mark.parametrize("plugin_type", TYPES)
def test_schema_is_complete(plugin_type: str, capsys: pytest.CaptureFixture[str]) -> None:
    schema = schema_of(plugin_type, capsys)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == DIALECT
    assert schema["title"].startswith(f"{plugin_type}: ")
    assert schema["description"]
    assert schema["required"][0] == "type"
    # Only JSON Schema's own words (pydantic writes its own "ge" next to a union).
    pending: list[Any] = [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            assert not {"ge", "le", "gt", "lt"} & set(node), node
            pending.extend(v for k, v in node.items() if k != "properties")
            pending.extend(node.get("properties", {}).values())
        elif isinstance(node, list):
            pending.extend(node)
    for name, node in objects(schema):
        if node.get("type") != "object":
            continue
        extra = node["additionalProperties"]
        # Unknown keys are accepted (the plugin accepts them), and the schema says so.
        assert isinstance(extra, dict)
        assert set(extra) == {"description"}, name
        assert ("keeps keys" in extra["description"]) == (plugin_type in CNISDK_TYPES)
        for key, prop in node.get("properties", {}).items():
            text = prop.get("description", "")
            assert text, (name, key)
            assert not re.search(r"``|:[a-z]+:`", text), (name, key, text)
            assert "title" not in prop


def test_defaults_required_and_releases(capsys: pytest.CaptureFixture[str]) -> None:
    bridge = schema_of("bridge", capsys)
    assert bridge["properties"]["bridge"]["default"] == "cni0"
    assert bridge["properties"]["vlan"]["maximum"] == 4094
    assert "v1.7.0 and later" in bridge["properties"]["portIsolation"]["description"]
    assert schema_of("vlan", capsys)["required"] == ["type", "master"]
    assert schema_of("vrf", capsys)["required"] == ["type", "vrfname"]
    host_local = schema_of("host-local", capsys)
    assert "ipam object" in host_local["title"]
    assert host_local["$defs"]["Range"]["required"] == ["subnet"]
    assert "v1.6.0 and later" in host_local["$defs"]["Route"]["properties"]["mtu"]["description"]
    assert "since v1.3.0" in schema_of("tap", capsys)["description"].lower()


def test_cnisdk_plugin_descriptions_are_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    istio = schema_of("istio-redirect", capsys)
    text = istio["properties"]["iptables_backend"]["description"]
    assert text.startswith("Which iptables to use: auto (legacy only when")
    assert istio["properties"]["iptables_backend"]["enum"] == ["auto", "nft", "legacy"]
    assert istio["properties"]["kube_api_attempts"]["default"] == 5
    nested = istio["$defs"]["KubernetesSection"]
    assert "keeps keys" in nested["additionalProperties"]["description"]


def test_plain_text() -> None:
    assert plain_text("Use ``auto`` with :class:`~cnisdk.NetConf` and `x`::\n\n  more") == (
        "Use auto with NetConf and x:\nmore"
    )


def _entries(path: Path) -> list[tuple[int, dict[str, Any]]]:
    doc = json.loads(path.read_text())
    return [(i, e) for i, e in enumerate(doc.get("plugins", [])) if isinstance(e, dict)]


@pytest.mark.parametrize("name", sorted(p.name for p in GOOD.glob("*.conflist")))
def test_good_configs_match_their_schemas(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    for _, entry in _entries(GOOD / name):
        if entry["type"] in TYPES:
            jsonschema.validate(entry, schema_of(entry["type"], capsys))
        ipam = entry.get("ipam") or {}
        if ipam.get("type") in IPAM_TYPES:
            jsonschema.validate(ipam, schema_of(ipam["type"], capsys))


@pytest.mark.parametrize(("name", "index"), sorted(SCHEMA_REFUSES.items()))
def test_bad_configs_fail_their_schemas(
    name: str, index: int, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = dict(_entries(BAD / name))[index]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(entry, schema_of(entry["type"], capsys))


def test_schema_unknown_type(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "nope"]) == 1
    err = capsys.readouterr().err
    assert "no plugin of type 'nope' is known" in err
    assert "istio-redirect" in err
    assert "host-local" in err
