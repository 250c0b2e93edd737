"""Install and uninstall, step by step, and what is out of place (for ``--watch``).

Order matters for a node taking pods: launchers and the kubeconfig first, the config entry
last, so a runtime never sees our entry before the plugin can run; uninstall goes the other
way round. Everything in the conf dir happens under its lock.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnisdk._confdir import select_network
from cnisdk._discovery import PluginLoadError
from cnisdk._files import holds, remove_durably, write_atomic
from cnisdk._install.binaries import launchers_out_of_place, remove_launchers, write_launchers
from cnisdk._install.chain import (
    ConfigChanged,
    chain_into,
    conf_dir_locked,
    pause_for_tests,
    plan_chain,
    too_deep_fails,
    unchain,
)
from cnisdk._install.cniconfig import chain_entries
from cnisdk._install.kubeconfig import (
    is_our_kubeconfig,
    kubeconfig_document,
    kubeconfig_host_path,
    with_kubeconfig,
)
from cnisdk._install.record import InstallRecord
from cnisdk._install.spec import InstallError, InstallSpec, NoPrimaryConfig, Outcome

__all__ = ["Drift", "desired_entries", "install", "out_of_place", "uninstall"]


def _capabilities(spec: InstallSpec) -> dict[str, tuple[str, ...]]:
    wanted: dict[str, tuple[str, ...]] = {}
    for plugin in spec.plugins:
        try:
            wanted[plugin.type] = tuple(plugin.load().capabilities)
        except PluginLoadError as exc:
            raise InstallError(str(exc)) from None
    return wanted


def desired_entries(spec: InstallSpec) -> list[dict[str, Any]]:
    """The entries install chains: the given ones (or bare ones), with the plugins' declared
    capabilities and the kubeconfig install writes.

    :raises InstallError: the entries do not fit the types, or a plugin does not load.
    """
    try:
        entries = chain_entries(spec.types, spec.entries, _capabilities(spec))
    except ValueError as exc:
        raise InstallError(str(exc)) from None
    if spec.serviceaccount_dir is not None:
        entries = with_kubeconfig(entries, kubeconfig_host_path(spec, entries))
    return entries


def _conf_dir(spec: InstallSpec) -> Path:
    conf_dir = spec.conf_dir
    if conf_dir is None:
        raise InstallError("no --conf-dir")
    try:
        st = os.stat(conf_dir)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InstallError(f"{conf_dir} is a symlink loop") from None
        raise NoPrimaryConfig(f"{conf_dir}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise InstallError(f"{conf_dir} is not a directory")
    return conf_dir


def _kubeconfig(
    spec: InstallSpec, sa_dir: Path, entries: list[dict[str, Any]]
) -> tuple[str, Path, bytes]:
    host_path = kubeconfig_host_path(spec, entries)
    data = kubeconfig_document(sa_dir, spec.types[0], spec.environ)
    return host_path, spec.to_local(host_path), data


def _write_kubeconfig(
    spec: InstallSpec, sa_dir: Path, entries: list[dict[str, Any]], outcome: Outcome
) -> str:
    host_path, local, data = _kubeconfig(spec, sa_dir, entries)
    if not holds(local, data, 0o600):
        try:
            local.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(local, data, 0o600)
        except OSError as exc:
            raise InstallError(
                f"cannot write the kubeconfig {local}: {exc.strerror or exc}"
            ) from None
        outcome.files.append(str(local))
    return host_path


def install(spec: InstallSpec, *, settle: bool = True) -> Outcome:
    """Install launchers, and with a conf dir the kubeconfig and chained entries. Idempotent:
    what is in place already is not written again.

    :param settle: after writing the config, look again and write again until the file a
        runtime uses holds our entries (bounded); without it, one write is the end (the
        watch loop looks again itself, at its own pace).

    :raises NoPrimaryConfig: the conf dir has no usable config yet.
    :raises InstallError: anything else that stops the install.
    """
    outcome = Outcome()
    entries = desired_entries(spec)
    write_launchers(spec, outcome)
    if spec.conf_dir is None:
        if spec.serviceaccount_dir is not None:
            _write_kubeconfig(spec, spec.serviceaccount_dir, entries, outcome)
        return outcome
    conf_dir = _conf_dir(spec)
    with conf_dir_locked(conf_dir):
        record, note = InstallRecord.load(conf_dir)
        if note:
            outcome.notes.append(note)
        try:
            if spec.serviceaccount_dir is not None:
                host_path = _write_kubeconfig(spec, spec.serviceaccount_dir, entries, outcome)
                if record.kubeconfigs.get(spec.types[0]) != host_path:
                    record.kubeconfigs[spec.types[0]] = host_path
                    record.save(conf_dir)
            pause = pause_for_tests(spec.environ)
            chain_into(conf_dir, entries, record, outcome, pause, settle=settle)
        except OSError as exc:
            raise InstallError(f"cannot update the config in {conf_dir}: {exc}") from None
    return outcome


@dataclass
class Drift:
    """What is not as install leaves it (empty: everything in place)."""

    config: Path | None = None
    """The config a runtime uses, when it lacks our entries as install writes them."""
    files: list[Path] = field(default_factory=list)
    """Launchers and the kubeconfig that are missing or differ."""

    def __bool__(self) -> bool:
        return self.config is not None or bool(self.files)

    def __str__(self) -> str:
        parts = [str(p) for p in self.files]
        if self.config is not None:
            parts.append(f"our entries in {self.config}")
        return ", ".join(parts)


def out_of_place(spec: InstallSpec) -> Drift:
    """What :func:`install` would change now; nothing is written.

    :raises NoPrimaryConfig: the conf dir has no usable config.
    :raises InstallError: the install cannot be done as asked.
    """
    entries = desired_entries(spec)
    drift = Drift(files=launchers_out_of_place(spec))
    if spec.serviceaccount_dir is not None:
        _, local, data = _kubeconfig(spec, spec.serviceaccount_dir, entries)
        if not holds(local, data, 0o600):
            drift.files.append(local)
    if spec.conf_dir is not None:
        conf_dir = _conf_dir(spec)
        try:
            plan = plan_chain(conf_dir, entries, InstallRecord())
        except ConfigChanged:
            drift.config = conf_dir
        else:
            if plan.data is not None:
                drift.config = plan.source.path
    return drift


def _entries_left(conf_dir: Path, types: list[str], outcome: Outcome) -> dict[str, Path]:
    """Entries of ``types`` that uninstall did not add and so left, each named in a note;
    returns the types the config a runtime uses still runs, with that file (every type, when
    the directory cannot be read: then nobody can tell)."""
    try:
        with too_deep_fails(conf_dir):
            selection = select_network(conf_dir, read_all=True)
    except (OSError, InstallError) as exc:
        outcome.notes.append(f"cannot tell which entries are left in {conf_dir}: {exc}")
        return dict.fromkeys(types, conf_dir)
    in_use: dict[str, Path] = {}
    for candidate in selection.candidates:
        if candidate.network is None:
            continue
        for plugin in candidate.network.plugins:
            kind = plugin.get("type")
            if kind not in types:
                continue
            outcome.notes.append(
                f"left the {kind} entry in {candidate.path}: cnisdk install did not add it"
            )
            if candidate is selection.chosen:
                in_use[str(kind)] = candidate.path
    return in_use


def _remove_kubeconfigs(spec: InstallSpec, candidates: list[str], outcome: Outcome) -> None:
    for host_path in dict.fromkeys(candidates):
        try:
            local = spec.to_local(host_path)
        except InstallError:
            continue
        if is_our_kubeconfig(local, spec.types[0]) and remove_durably(local):
            outcome.files.append(str(local))


def uninstall(spec: InstallSpec) -> Outcome:
    """Take out what install added: our entries (by the install record), then launchers and
    the kubeconfig.

    Entries of our types that install did not add (an operator's own, or any entry when
    there is no record) are left, with a note. While the config a runtime uses still runs a
    type, its launcher and kubeconfig stay too: deleting them would fail every pod start.

    :raises InstallError: the conf dir is not a directory or cannot be locked, or a config
        kept changing.
    :raises OSError: a file cannot be written or removed.
    """
    outcome = Outcome()
    types = list(spec.types)
    kubeconfigs: list[str] = []
    in_use: dict[str, Path] = {}
    conf_dir: Path | None = None
    if spec.conf_dir is not None:
        with contextlib.suppress(NoPrimaryConfig):  # no conf dir: nothing chained there
            conf_dir = _conf_dir(spec)
    if conf_dir is not None:
        with conf_dir_locked(conf_dir):
            record, note = InstallRecord.load(conf_dir)
            if note:
                outcome.notes.append(note)
            loaded = copy.deepcopy(record)
            unchain(conf_dir, types, record, outcome, pause_for_tests(spec.environ))
            in_use = _entries_left(conf_dir, types, outcome)
            if not in_use:
                kubeconfigs.extend(
                    record.kubeconfigs.pop(t) for t in types if t in record.kubeconfigs
                )
            if record != loaded:  # an unreadable record stays for the operator to look at
                record.save(conf_dir)
    for kind, path in in_use.items():
        outcome.notes.append(f"kept the {kind} launcher and kubeconfig: {path} still runs it")
    remove_launchers(spec, outcome, keep=in_use)
    if in_use:
        return outcome
    if spec.kubeconfig:
        kubeconfigs.append(spec.kubeconfig)
    elif spec.conf_dir is not None:
        with contextlib.suppress(InstallError):
            kubeconfigs.append(str(spec.to_host(spec.conf_dir) / f"ZZZ-{types[0]}-kubeconfig"))
    _remove_kubeconfigs(spec, kubeconfigs, outcome)
    return outcome
