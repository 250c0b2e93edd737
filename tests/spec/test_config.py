"""Config models and libcni's conflist parsing (Go's libcni)."""

from __future__ import annotations

import json

import pytest

from cnisdk import NetConf
from cnisdk.spec._config import NetConfList, parse_conflist, parse_netconf
from cnisdk.spec._versions import parse_version, supports_check, supports_gc, version_family


def test_missing_or_empty_version_means_010() -> None:
    assert NetConf.model_validate({"name": "n"}).cni_version == "0.1.0"
    assert NetConf.model_validate({"name": "n", "cniVersion": ""}).cni_version == "0.1.0"


def test_unknown_fields_written_back_unchanged() -> None:
    doc = {"name": "n", "type": "x", "custom": {"a": [1, 2]}, "ipam": {"type": "host-local"}}
    conf = NetConf.model_validate(doc)
    assert conf.to_dict() == doc
    assert conf.model_extra == {"custom": {"a": [1, 2]}}


def test_subclass_fields_match_case_insensitively() -> None:
    class Config(NetConf):
        mtu: int = 0

    conf = Config.model_validate({"NAME": "n", "Mtu": 9000, "CNIVersion": "1.0.0"})
    assert (conf.name, conf.mtu, conf.cni_version) == ("n", 9000, "1.0.0")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"plugins": [{"type": "x"}]}, "error parsing configuration list: no name"),
        ({"name": 1, "plugins": []}, "error parsing configuration list: invalid name type float64"),
        (
            {"name": "n", "cniVersion": 1, "plugins": []},
            "error parsing configuration list: invalid cniVersion type float64",
        ),
        (
            {"name": "n", "disableCheck": "yes", "plugins": []},
            'error parsing configuration list: invalid value "yes" for disableCheck',
        ),
        (
            {"name": "n", "disableGC": 1, "plugins": []},
            "error parsing configuration list: invalid type float64 for disableGC",
        ),
        (
            {"name": "n", "cniVersions": "1.0.0", "plugins": []},
            "error parsing configuration list: invalid type for cniVersions: []interface {}",
        ),
        (
            {"name": "n", "cniVersions": ["1.0.0", 2], "plugins": []},
            "error parsing configuration list: invalid type for cniVersions index 1: float64",
        ),
        (
            {"name": "n", "cniVersion": None, "plugins": []},
            "error parsing configuration list: invalid cniVersion type <nil>",
        ),
        (
            {"name": "n", "loadOnlyInlinedPlugins": True},
            "error parsing configuration list: `loadOnlyInlinedPlugins` is true, and no 'plugins' "
            "key",
        ),
        ({"name": "n", "plugins": {}}, "error parsing configuration list: invalid 'plugins' type"),
        ({"name": "n", "plugins": []}, "error parsing configuration list: no plugins in list"),
        (
            {"name": "n", "plugins": [{"type": "a"}, {"name": "b"}]},
            "failed to parse plugin config 1: error parsing configuration: missing 'type'",
        ),
    ],
)
def test_conflist_errors_use_libcni_messages(doc: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_conflist(json.dumps(doc))
    assert str(info.value).startswith(message)


def test_conflist_accepts_flags_as_strings() -> None:
    conflist = parse_conflist(
        json.dumps(
            {"name": "n", "disableCheck": "TRUE", "disableGC": "false", "plugins": [{"type": "a"}]}
        )
    )
    assert conflist.disable_check is True and conflist.disable_gc is False


def test_conflist_without_plugins_parses_empty() -> None:
    # A file loader then appends <dir>/<name>/*.conf (see cnisdk._confdir).
    assert parse_conflist('{"name": "n"}').plugins == []


def test_effective_version_takes_highest_usable() -> None:
    conflist = NetConfList.model_validate(
        {"name": "n", "cniVersion": "0.4.0", "cniVersions": ["1.0.0", "9.9.9"], "plugins": []}
    )
    assert conflist.effective_version == "1.0.0"


def test_single_config_needs_type() -> None:
    with pytest.raises(ValueError, match="missing 'type'"):
        parse_netconf('{"name": "n"}')
    assert parse_netconf('{"name": "n", "type": "bridge"}')["type"] == "bridge"


def test_version_ordering_and_verbs() -> None:
    assert parse_version("1.0") == parse_version("1.0.0") == (1, 0, 0)
    assert parse_version("") == (0, 1, 0)
    with pytest.raises(ValueError, match=r'invalid version "1\.0\.0\.0": too many parts'):
        parse_version("1.0.0.0")
    with pytest.raises(ValueError, match="failed to convert micro version part"):
        parse_version("1.0.0-rc1")
    assert not supports_check("0.3.1") and supports_check("0.4.0")
    assert not supports_gc("1.0.0") and supports_gc("1.1.0")
    assert [version_family(v) for v in ("0.2.0", "0.3.1", "1.1.0", "2.0.0")] == [
        "0.2",
        "0.4",
        "1.0",
        None,
    ]


def test_effective_version_of_an_unparsable_version_is_kept_as_is() -> None:
    conflist = parse_conflist('{"name": "n", "cniVersion": "one", "plugins": [{"type": "a"}]}')
    assert conflist.effective_version == "one"
