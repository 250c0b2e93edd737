"""A config directory as runtimes read it: which files exist, which load, which one is used."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cnisdk._confdir import (
    MAX_CONF_BYTES,
    ConfLoadError,
    NoNetworkError,
    conf_files,
    conflist_from_bytes,
    find_network,
    load_network,
    primary_network,
    select_network,
)

GOOD_LIST = '{"cniVersion":"1.0.0","name":"%s","plugins":[{"type":"bridge"}]}'


def test_conf_files_lists_like_libcni(tmp_path: Path) -> None:
    for name in ("b.conflist", "a.conf", "c.json", "d.txt", "e.conf.bak", ".f.conf", "Z.conf"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "dir.conf").mkdir()
    (tmp_path / "link.conflist").symlink_to(tmp_path / "b.conflist")
    (tmp_path / "dangling.conf").symlink_to(tmp_path / "nowhere")
    (tmp_path / "todir.conf").symlink_to(tmp_path / "dir.conf")
    names = [p.name for p in conf_files(tmp_path)]
    # Byte order (upper case first), hidden files included, directories (not links) excluded.
    assert names == [
        ".f.conf",
        "Z.conf",
        "a.conf",
        "b.conflist",
        "c.json",
        "dangling.conf",
        "link.conflist",
        "todir.conf",
    ]
    assert conf_files(tmp_path / "missing") == []


def test_load_single_conf_is_wrapped(tmp_path: Path) -> None:
    conf = tmp_path / "10-x.conf"
    conf.write_text('{"cniVersion":"0.4.0","name":"x","type":"bridge","bridge":"br9"}')
    conflist = load_network(conf)
    assert conflist.name == "x" and conflist.cni_version == "0.4.0"
    assert conflist.plugins == [
        {"cniVersion": "0.4.0", "name": "x", "type": "bridge", "bridge": "br9"}
    ]
    # What libcni caches for such a network: Go's marshalled wrapper, keys sorted.
    assert conflist.raw == (
        b'{"cniVersion":"0.4.0","name":"x","plugins":[{"bridge":"br9","cniVersion":"0.4.0",'
        b'"name":"x","type":"bridge"}]}'
    )


def test_single_conf_name_and_version_match_keys_like_go(tmp_path: Path) -> None:
    conf = tmp_path / "10-x.conf"
    conf.write_text('{"CNIVERSION":"1.0.0","Name":"x","TYPE":"bridge"}')
    conflist = load_network(conf)
    assert (conflist.name, conflist.cni_version) == ("x", "1.0.0")


def test_conflist_keys_match_exactly(tmp_path: Path) -> None:
    # libcni reads a list into a map: "Name" is another key, "name" is the network's name.
    data = b'{"name":"good","Name":"other","plugins":[{"type":"a"}]}'
    assert conflist_from_bytes(data).name == "good"


def test_conflist_plugin_dir_is_appended(tmp_path: Path) -> None:
    (tmp_path / "net.conflist").write_text(
        '{"cniVersion":"1.1.0","name":"net","plugins":[{"type":"a"}]}'
    )
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "20-c.conf").write_text('{"type":"c"}')
    (tmp_path / "net" / "10-b.conf").write_text('{"type":"b"}')
    assert [p["type"] for p in load_network(tmp_path / "net.conflist").plugins] == ["a", "b", "c"]


def test_conflist_without_plugins_key_takes_them_from_its_dir(tmp_path: Path) -> None:
    (tmp_path / "net.conflist").write_text('{"cniVersion":"1.1.0","name":"net"}')
    with pytest.raises(ConfLoadError, match="no plugin configs found"):
        load_network(tmp_path / "net.conflist")
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "10-b.conf").write_text('{"type":"b"}')
    assert [p["type"] for p in load_network(tmp_path / "net.conflist").plugins] == ["b"]
    inlined = tmp_path / "only.conflist"
    inlined.write_text('{"name":"net","loadOnlyInlinedPlugins":true}')
    with pytest.raises(ConfLoadError, match="`loadOnlyInlinedPlugins` is true"):
        load_network(inlined)


def test_invalid_utf8_loads_as_go_reads_it(tmp_path: Path) -> None:
    # Go's decoder accepts invalid UTF-8 (as U+FFFD), so libcni loads such a file.
    path = tmp_path / "10-latin1.conflist"
    path.write_bytes(b'{"name":"net","plugins":[{"type":"a","note":"caf\xe9"}]}')
    conflist = load_network(path)
    assert conflist.plugins[0]["note"] == "caf\ufffd"
    assert conflist.raw == path.read_bytes()


@pytest.mark.parametrize("where", ["entry", "list"])
def test_nesting_as_deep_as_go_allows_loads(tmp_path: Path, where: str) -> None:
    # Go's decoder accepts 10000 levels; libcni loads such a file, in an entry or beside one.
    deep = "[" * 9000 + "]" * 9000
    entry = f'{{"type":"bridge","x":{deep}}}' if where == "entry" else '{"type":"bridge"}'
    extra = f',"x":{deep}' if where == "list" else ""
    path = tmp_path / "deep.conflist"
    path.write_text(f'{{"cniVersion":"1.0.0","name":"n","plugins":[{entry}]{extra}}}')
    assert load_network(path).plugins[0]["type"] == "bridge"
    path.write_text(f'{{"cniVersion":"1.0.0","name":"n","plugins":[{{"x":{deep}}}]}}')
    with pytest.raises(ConfLoadError, match="missing 'type'"):
        load_network(path)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "error parsing configuration list: unexpected end of JSON input"),
        (b"[]", "json: cannot unmarshal array into Go value of type map[string]interface {}"),
        (b'{"name":"n","plugins":[{"name":"x"}]}', "missing 'type'"),
        (
            b'{"name":"n","plugins":[{"type":"a","capabilities":{"portMappings":"yes"}}]}',
            "cannot unmarshal string into Go struct field PluginConf.capabilities of type bool",
        ),
        (b'{"name":"n","plugins":[]}', "no plugins in list"),
    ],
)
def test_load_errors_are_libcnis(tmp_path: Path, body: bytes, message: str) -> None:
    path = tmp_path / "x.conflist"
    path.write_bytes(body)
    with pytest.raises(ConfLoadError, match=message.replace("[", r"\[").replace("{", r"\{")):
        load_network(path)


def test_files_that_cannot_be_read_safely_are_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.conflist"
    os.mkfifo(fifo)
    with pytest.raises(ConfLoadError, match="is a FIFO"):
        load_network(fifo)  # would block forever if opened for a plain read
    big = tmp_path / "big.conflist"
    big.write_bytes(b" " * (MAX_CONF_BYTES + 1))
    with pytest.raises(ConfLoadError, match="larger than"):
        load_network(big)
    loop = tmp_path / "loop.conflist"
    loop.symlink_to(loop)
    with pytest.raises(ConfLoadError, match="too many levels of symbolic links"):
        load_network(loop)
    with pytest.raises(ConfLoadError, match="is a device"):
        load_network(Path("/dev/zero"))


def test_by_content_reads_a_list_whatever_its_name(tmp_path: Path) -> None:
    path = tmp_path / "net.json"
    path.write_text(GOOD_LIST % "listed")
    with pytest.raises(ConfLoadError, match="missing 'type'"):
        load_network(path)  # in a config directory, a .json file is a single config
    assert load_network(path, by_content=True).name == "listed"
    single = tmp_path / "single.conflist"
    single.write_text('{"cniVersion":"1.0.0","name":"one","type":"bridge"}')
    assert load_network(single, by_content=True).plugins == [
        {"cniVersion": "1.0.0", "name": "one", "type": "bridge"}
    ]


# --- which file a runtime uses -------------------------------------------------------------


def test_first_loadable_file_in_name_order_wins(tmp_path: Path) -> None:
    (tmp_path / "00-broken.conflist").write_text("{")
    (tmp_path / "05-noplugins.conflist").write_text('{"name":"n","plugins":[]}')
    (tmp_path / "07-readme.txt").write_text("{}")
    (tmp_path / "10-good.conf").write_text('{"cniVersion":"1.0.0","name":"good","type":"ptp"}')
    (tmp_path / "20-later.conflist").write_text(GOOD_LIST % "later")
    path, conflist = primary_network(tmp_path)
    assert path.name == "10-good.conf" and conflist.name == "good"
    selection = select_network(tmp_path)
    skipped = selection.skipped()
    assert len(skipped) == 2 and "00-broken" in skipped[0] and "no plugins" in skipped[1]
    assert [c.path.name for c in selection.candidates] == [
        "00-broken.conflist",
        "05-noplugins.conflist",
        "10-good.conf",
    ]
    everything = select_network(tmp_path, read_all=True)
    assert [c.path.name for c in everything.candidates][-1] == "20-later.conflist"
    assert everything.chosen is not None and everything.chosen.path.name == "10-good.conf"


def test_no_usable_file_says_why_for_each(tmp_path: Path) -> None:
    (tmp_path / "10-a.conflist").write_text("{")
    (tmp_path / "20-b.conf").write_text('{"name":"x"}')
    with pytest.raises(NoNetworkError) as info:
        primary_network(tmp_path)
    assert len(info.value.skipped) == 2
    with pytest.raises(NoNetworkError, match="no networks found"):
        primary_network(tmp_path / "missing")


def test_find_network_by_name_prefers_lists(tmp_path: Path) -> None:
    (tmp_path / "10-x.conf").write_text('{"cniVersion":"1.0.0","name":"x","type":"single"}')
    (tmp_path / "20-x.conflist").write_text(GOOD_LIST % "x")
    (tmp_path / "05-broken.conflist").write_text("{")
    assert find_network(tmp_path, "x").plugins[0]["type"] == "bridge"
    with pytest.raises(FileNotFoundError, match='no net configuration with name "y"'):
        find_network(tmp_path, "y")


# The same directory must give the same answer to every part of cnisdk that reads it: the
# scenarios below are shared with the validate and install tests (SELECTION_SCENARIOS).


def _scenario_symlinks(d: Path) -> str:
    target = d.parent / f"{d.name}-elsewhere.conflist"
    target.write_text(GOOD_LIST % "linked")
    (d / "10-link.conflist").symlink_to(target)
    (d / "20-plain.conflist").write_text(GOOD_LIST % "plain")
    return "10-link.conflist"


def _scenario_dangling_and_dir_links(d: Path) -> str:
    (d / "05-dangling.conflist").symlink_to(d / "nowhere")
    (d / "sub").mkdir()
    (d / "06-todir.conflist").symlink_to(d / "sub")
    (d / "07-dir.conflist").mkdir()
    (d / "10-good.conf").write_text('{"cniVersion":"1.0.0","name":"good","type":"ptp"}')
    return "10-good.conf"


def _scenario_broken_first(d: Path) -> str:
    (d / "00-broken.conflist").write_bytes(b'{"name": "x", "plugins": [,]}')
    (d / "01-fifo.conflist").touch()
    (d / "01-fifo.conflist").unlink()
    os.mkfifo(d / "01-fifo.conflist")
    (d / "02-not-a-list.conf").write_text(GOOD_LIST % "list-in-conf")
    (d / "10-ok.conflist").write_text(GOOD_LIST % "ok")
    return "10-ok.conflist"


def _scenario_conf_vs_conflist(d: Path) -> str:
    (d / "10-net.conflist").write_text(GOOD_LIST % "as-list")
    (d / "10-net.conf").write_text('{"cniVersion":"1.0.0","name":"as-conf","type":"ptp"}')
    return "10-net.conf"  # ".conf" sorts before ".conflist"


def _scenario_name_ties(d: Path) -> str:
    (d / "10-b.conflist").write_text(GOOD_LIST % "b")
    (d / "10-B.conflist").write_text(GOOD_LIST % "B")
    (d / "10-a.json").write_text('{"cniVersion":"1.0.0","name":"a","type":"ptp"}')
    return "10-B.conflist"  # byte order: upper case before lower case


def _scenario_latin1(d: Path) -> str:
    (d / "10-latin1.conflist").write_bytes(
        b'{"cniVersion":"1.0.0","name":"l","plugins":[{"type":"bridge","x":"\xe9"}]}'
    )
    (d / "20-utf8.conflist").write_text(GOOD_LIST % "u")
    return "10-latin1.conflist"


def _scenario_dot_names(d: Path) -> str:
    (d / ".conf").write_text('{"cniVersion":"1.0.0","name":"dot","type":"ptp"}')
    (d / "10-plain.conflist").write_text(GOOD_LIST % "plain")
    return ".conf"  # Go's filepath.Ext(".conf") is ".conf": libcni lists it, and it sorts first


SELECTION_SCENARIOS = {
    "symlinks": _scenario_symlinks,
    "dangling-and-dir-links": _scenario_dangling_and_dir_links,
    "broken-first": _scenario_broken_first,
    "conf-vs-conflist": _scenario_conf_vs_conflist,
    "name-ties": _scenario_name_ties,
    "latin1": _scenario_latin1,
    "dot-names": _scenario_dot_names,
}


@pytest.mark.parametrize("scenario", sorted(SELECTION_SCENARIOS))
def test_runtime_selection(tmp_path: Path, scenario: str) -> None:
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    expected = SELECTION_SCENARIOS[scenario](conf_dir)
    path, _ = primary_network(conf_dir)
    assert path.name == expected


@pytest.mark.parametrize("scenario", sorted(SELECTION_SCENARIOS))
def test_exec_uses_the_same_file(tmp_path: Path, scenario: str) -> None:
    from cnisdk._cli import main

    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    expected = SELECTION_SCENARIOS[scenario](conf_dir)
    # Fake plugins under the scenarios' types record the config exec gives them.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "record.json"
    for plugin_type in ("bridge", "ptp"):
        fake = bin_dir / plugin_type
        fake.write_text(f'#!/bin/sh\ncat > {record}\nprintf \'{{"cniVersion":"1.0.0"}}\'\n')
        fake.chmod(0o755)
    argv = ["exec", "add", str(conf_dir), "/nonexistent", "--cni-path", str(bin_dir)]
    assert main([*argv, "--cache-dir", str(tmp_path / "cache")]) == 0
    chosen = load_network(conf_dir / expected)
    assert json.loads(record.read_bytes())["name"] == chosen.name
