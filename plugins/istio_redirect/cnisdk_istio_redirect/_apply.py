"""Apply and verify the redirect rules inside a pod network namespace.

Everything goes through a :class:`CommandRunner`, an async callable that runs an argv *inside
the pod netns* (the plugin enters the namespace; tests use ``ip netns exec``). No shell is used
anywhere. Only anyio-neutral ``async``/``await`` is used here.

Design notes (measured with iptables 1.8.9 and nftables 1.0.6, nft and legacy backends):

* ``iptables-restore`` is atomic **per table**, not per blob: each ``COMMIT`` is its own
  transaction, so when the nat block fails the mangle block before it stays applied. A parse
  error (bad port, unknown option) aborts before anything is committed. Therefore a failed apply
  is followed by :func:`remove_iptables`' restore in every family, so a failed ADD never
  leaves partial redirection behind.
* Idempotency: one ``iptables-save`` per family is parsed and compared with what we would
  install (rules are compared after undoing ``iptables-save``'s normalisation, e.g. ``-m tcp``,
  hex marks, ``--set-xmark``). Equal: nothing is run. Otherwise a single restore per family both
  removes our old state (``-D`` our rules and jumps from builtin chains, ``-F`` every
  ``ISTIO_*`` chain, ``-X`` the ones no longer needed) and installs the new rules, re-using
  existing chains instead of ``-N`` so "Chain already exists" cannot happen.
* Backend detection (Istio's heuristic): legacy only when ``iptables-legacy-save`` already
  prints >= 3 lines in the pod netns, else nft. Which *binaries* exist is cached per process
  (host filesystem, namespace independent); the legacy-rules probe is **not** cached because
  it depends on each pod's namespace (another chained plugin may have used legacy there). When
  legacy wins, the probe's output doubles as the state dump, saving one exec. When the
  namespace has no legacy table at all (its ``/proc/net/ip{,6}_tables_names`` is empty, as in
  a fresh pod netns) that save would print nothing, so a :class:`LegacyTablesProbe` (a
  ``/proc`` read in the namespace) lets the caller skip the exec; the rule is unchanged.
* Removal mirrors apply: :func:`remove_iptables` runs the removing half of the same restore
  plan (built from the dump, so what is already gone is never named; the pieces are in
  ``_iptables_state``), and :func:`remove_nftables` the deleting half of the nft script.
* NSS: ``iptables-save``/``nft -n`` print numbers, but ``iptables-restore`` still calls
  ``getpwnam()`` for ``--uid-owner`` (istio#48416), and legacy runs with ``--wait=30`` on a
  lock file. The plugin's runner hides ``nsswitch.conf`` and locks per netns.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Literal, Protocol

from ._iptables_rules import Family, IptRule, build_rules
from ._iptables_state import TableState, diff, parse_save, restore_text
from ._nftables_rules import NFT_TABLES, delete_tables, nft_tables_used, render_nftables
from ._redirect import RedirectSpec

__all__ = [
    "Backend",
    "CommandRunner",
    "LegacyTablesProbe",
    "RedirectApplyError",
    "apply_iptables",
    "apply_nftables",
    "remove_iptables",
    "remove_nftables",
    "verify_iptables",
    "verify_nftables",
]

Backend = Literal["legacy", "nft"]

FORCE_ENV = "FORCE_IPTABLES_BINARY"
"""Istio's override variable, honoured here too: ``legacy`` or ``nft``."""

LEGACY_WAIT = "--wait=30"


class CommandRunner(Protocol):
    """Runs ``argv`` inside the pod network namespace; returns (exit code, stdout, stderr)."""

    async def __call__(
        self, argv: Sequence[str], input: bytes | None = None
    ) -> tuple[int, bytes, bytes]: ...


class LegacyTablesProbe(Protocol):
    """Whether the pod netns may hold legacy (x_tables) tables of ``family``.

    ``False`` only when it certainly holds none (``/proc/net/ip{,6}_tables_names`` read in
    the namespace is empty or absent): ``iptables-legacy-save`` would then print nothing, so
    Istio's "legacy only if legacy rules exist" rule picks nft without running it.
    """

    async def __call__(self, family: Family) -> bool: ...


class RedirectApplyError(RuntimeError):
    """A command failed; the message names the command and carries its stderr."""

    def __init__(self, argv: Sequence[str], code: int, stderr: bytes, context: str = "") -> None:
        self.argv = list(argv)
        self.code = code
        self.stderr = stderr.decode(errors="replace").strip()
        prefix = f"{context}: " if context else ""
        super().__init__(f"{prefix}{' '.join(self.argv)} failed (exit {code}): {self.stderr}")


async def _check(
    runner: CommandRunner, argv: Sequence[str], input: bytes | None = None, context: str = ""
) -> bytes:
    code, out, err = await runner(argv, input)
    if code != 0:
        raise RedirectApplyError(argv, code, err, context)
    return out


# --------------------------------------------------------------------------- backend detection


def _tool(backend: Backend, family: Family, suffix: Literal["save", "restore"]) -> str:
    base = "iptables" if family == 4 else "ip6tables"
    return f"{base}-{backend}-{suffix}"


@cache
def _have(binary: str) -> bool:
    # The runner executes host binaries (CNI plugins run with the host filesystem), so a
    # lookup on our own PATH is valid for every namespace and safe to cache.
    return shutil.which(binary) is not None


@dataclass
class _Detected:
    backend: Backend
    save_output: bytes | None = None  # the legacy probe's dump, re-usable as state


async def _detect(
    runner: CommandRunner,
    family: Family,
    override: Backend | None,
    legacy_tables: LegacyTablesProbe | None,
) -> _Detected:
    forced = override or _env_override()
    if forced is not None:
        return _Detected(forced)
    legacy_save = _tool("legacy", family, "save")
    # No legacy table in the namespace: the save would print nothing, so skip the exec.
    if _have(legacy_save) and (legacy_tables is None or await legacy_tables(family)):
        code, out, _ = await runner([legacy_save])
        # Istio's rule: an existing legacy ruleset (>= 3 save lines) wins, so we do not split
        # a pod's rules across two backends that would both be evaluated.
        if code == 0 and out.count(b"\n") >= 3:
            return _Detected("legacy", out)
    if _have(_tool("nft", family, "save")):
        return _Detected("nft")
    if _have(legacy_save):
        return _Detected("legacy")
    raise RedirectApplyError([legacy_save], 127, b"no iptables-nft or iptables-legacy binaries")


def _env_override() -> Backend | None:
    value = os.environ.get(FORCE_ENV, "").strip().lower()
    if value in ("legacy", "nft"):
        return value  # type: ignore[return-value]
    return None


# --------------------------------------------------------------------------- iptables


async def _family_state(
    runner: CommandRunner,
    family: Family,
    backend: Backend | None,
    legacy_tables: LegacyTablesProbe | None,
) -> tuple[Backend, dict[str, TableState]]:
    detected = await _detect(runner, family, backend, legacy_tables)
    dump = detected.save_output
    if dump is None:
        dump = await _check(
            runner, [_tool(detected.backend, family, "save")], context=f"IPv{family} state"
        )
    return detected.backend, parse_save(dump.decode(errors="replace"))


def _restore_argv(backend: Backend, family: Family) -> list[str]:
    argv = [_tool(backend, family, "restore"), "--noflush"]
    if backend == "legacy":
        argv.append(LEGACY_WAIT)
    return argv


async def apply_iptables(
    runner: CommandRunner,
    spec: RedirectSpec,
    families: Iterable[Family],
    backend: Backend | None = None,
    legacy_tables: LegacyTablesProbe | None = None,
) -> None:
    """Install the redirect rules for each family, idempotently.

    Per family: detect the backend, dump the current rules; if our chains and rules already
    match, do nothing; otherwise run exactly one ``iptables-restore --noflush`` that removes
    our previous (drifted or partial) state and installs the new rules. If a restore fails,
    what :func:`remove_iptables` removes is removed in every requested family (best effort),
    then the error is raised.

    :param runner: runs commands in the pod netns.
    :param spec: what to redirect.
    :param families: e.g. ``(4,)`` or ``(4, 6)``.
    :param backend: force ``legacy``/``nft`` instead of detecting.
    :param legacy_tables: a cheaper first step of detection (see :class:`LegacyTablesProbe`).
    :raises RedirectApplyError: naming the failed command and its stderr.
    :raises ValueError: for an invalid spec (e.g. ``*`` in the exclude CIDRs).
    """
    plans = [(fam, build_rules(spec, fam)) for fam in families]  # validate before touching
    for fam, rules in plans:
        chosen, state = await _family_state(runner, fam, backend, legacy_tables)
        if not diff(state, rules):
            continue
        argv = _restore_argv(chosen, fam)
        code, _, err = await runner(argv, restore_text(state, rules, install=True).encode())
        if code != 0:
            # Every requested family, not only those done so far: a half-redirected pod (v4
            # rules from an earlier ADD, none for v6) is worse than none while ADD is failing.
            for cleaned, cleaned_rules in plans:
                # Best effort: the restore's error is the one worth reporting.
                with contextlib.suppress(RedirectApplyError):
                    await _remove_family(runner, cleaned, cleaned_rules, backend, legacy_tables)
            raise RedirectApplyError(argv, code, err, f"IPv{fam} rules")


async def _remove_family(
    runner: CommandRunner,
    family: Family,
    rules: Sequence[IptRule],
    backend: Backend | None,
    legacy_tables: LegacyTablesProbe | None,
) -> None:
    chosen, state = await _family_state(runner, family, backend, legacy_tables)
    text = restore_text(state, rules, install=False)
    if text:
        argv = _restore_argv(chosen, family)
        await _check(runner, argv, text.encode(), f"IPv{family} cleanup")


async def remove_iptables(
    runner: CommandRunner,
    spec: RedirectSpec,
    families: Iterable[Family],
    backend: Backend | None = None,
    legacy_tables: LegacyTablesProbe | None = None,
) -> None:
    """Remove what :func:`apply_iptables` installs for ``spec``; keep everything else.

    Per family, one ``iptables-restore --noflush`` built from the current dump: it deletes
    the rules ``spec`` puts in builtin chains and every jump into an ``ISTIO_*`` chain, then
    flushes and deletes every ``ISTIO_*`` chain. What is already gone is not named, so a
    repeated or partial removal succeeds; when nothing of ours is left no restore runs.

    :param runner: runs commands in the pod netns.
    :param spec: what was redirected (its builtin-chain rules are recognised by it).
    :param families: families to clean.
    :param backend: force a backend instead of detecting.
    :param legacy_tables: as for :func:`apply_iptables`.
    :raises RedirectApplyError: if the state cannot be read or the restore fails.
    :raises ValueError: for an invalid spec.
    """
    plans = [(fam, build_rules(spec, fam)) for fam in families]
    for fam, rules in plans:
        await _remove_family(runner, fam, rules, backend, legacy_tables)


async def verify_iptables(
    runner: CommandRunner,
    spec: RedirectSpec,
    families: Iterable[Family],
    backend: Backend | None = None,
    legacy_tables: LegacyTablesProbe | None = None,
) -> list[str]:
    """Compare the installed rules with what ``spec`` needs (for CNI CHECK).

    :param runner: runs commands in the pod netns.
    :param spec: what should be redirected.
    :param families: families to check.
    :param backend: force a backend instead of detecting.
    :param legacy_tables: as for :func:`apply_iptables`.
    :returns: human-readable problems, each prefixed with ``IPv4``/``IPv6``; empty means OK.
    :raises RedirectApplyError: if the rules cannot be read.
    """
    problems: list[str] = []
    for fam in families:
        _, state = await _family_state(runner, fam, backend, legacy_tables)
        problems.extend(f"IPv{fam} {p}" for p in diff(state, build_rules(spec, fam)))
    return problems


# --------------------------------------------------------------------------- nftables

_NFT_LOAD = ("nft", "-f", "-")
_SCRATCH = "cnisdk-verify-"


async def apply_nftables(runner: CommandRunner, spec: RedirectSpec, ipv6: bool) -> None:
    """Install Istio's native-nftables rules with one ``nft -f -`` transaction.

    The script first deletes our three tables (as :func:`remove_nftables` does), then creates
    the ones this spec needs: Istio's ``add`` + ``flush`` alone would keep chains an earlier
    spec created (say ``istio-output-dns``). Applying twice is a no-op in effect, and as
    ``nft -f`` is atomic there is no moment without rules and a failure leaves the previous
    ruleset untouched.

    :param runner: runs commands in the pod netns.
    :param spec: what to redirect.
    :param ipv6: also install the ``ip6`` rules.
    :raises RedirectApplyError: if ``nft`` fails.
    """
    script = delete_tables(NFT_TABLES) + render_nftables(spec, ipv6)
    await _check(runner, _NFT_LOAD, script.encode(), "nftables rules")


async def remove_nftables(runner: CommandRunner) -> None:
    """Remove what :func:`apply_nftables` installs; keep everything else.

    Every rule of ours lives in our three ``inet istio-proxy-*`` tables, so deleting them, in
    one transaction, removes exactly what any spec installed. A table already gone is
    tolerated.

    :param runner: runs commands in the pod netns.
    :raises RedirectApplyError: if ``nft`` fails.
    """
    await _check(runner, _NFT_LOAD, delete_tables(NFT_TABLES).encode(), "nftables cleanup")


def _table_blocks(listing: str) -> dict[str, list[str]]:
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in listing.splitlines():
        m = re.match(r"^table inet (\S+) \{$", line)
        if m:
            current = blocks.setdefault(str(m.group(1)), [])
        elif line == "}":
            current = None
        elif current is not None and line.strip() and line.strip() != "flags dormant":
            current.append(line)
    return blocks


async def verify_nftables(runner: CommandRunner, spec: RedirectSpec, ipv6: bool) -> list[str]:
    """Compare the installed ``istio-proxy-*`` tables with what ``spec`` needs.

    nft prints rules in its own normal form, so the expected rules are loaded into dormant
    scratch tables (``cnisdk-verify-*``: hooks never run) in the same namespace, both are listed
    statelessly and compared, and the scratch tables are removed. Three ``nft`` execs.

    :param runner: runs commands in the pod netns.
    :param spec: what should be redirected.
    :param ipv6: whether the ``ip6`` rules should be there.
    :returns: problems; empty means OK.
    :raises RedirectApplyError: if ``nft`` fails.
    """
    scratch_tables = [_SCRATCH + t for t in NFT_TABLES]
    scratch_lines: list[str] = []
    for line in render_nftables(spec, ipv6).splitlines():
        line = line.replace(" inet istio-proxy-", f" inet {_SCRATCH}istio-proxy-")
        if line.startswith("add table "):
            line += " { flags dormant ; }"
        scratch_lines.append(line + "\n")
    scratch = delete_tables(scratch_tables) + "".join(scratch_lines)
    try:
        await _check(runner, _NFT_LOAD, scratch.encode(), "nftables verify")
        out = await _check(
            runner, ["nft", "-n", "-s", "list", "ruleset"], context="nftables verify"
        )
    finally:
        await runner(_NFT_LOAD, delete_tables(scratch_tables).encode())
    blocks = _table_blocks(out.decode(errors="replace"))
    problems: list[str] = []
    used = nft_tables_used(spec, ipv6)
    for t in NFT_TABLES:
        have = blocks.get(t)
        if t not in used:
            if have is not None:
                problems.append(f"unexpected table inet {t}")
            continue
        want = blocks.get(_SCRATCH + t, [])
        if have is None:
            problems.append(f"table inet {t} missing")
        elif have != want:
            problems.extend(f"inet {t}: missing: {w.strip()}" for w in want if w not in have)
            problems.extend(f"inet {t}: unexpected: {h.strip()}" for h in have if h not in want)
            if not any(p.startswith(f"inet {t}:") for p in problems):
                problems.append(f"inet {t}: rules out of order")
    return problems
