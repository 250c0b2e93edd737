"""Apply and verify the redirect rules inside a pod network namespace.

Everything goes through a :class:`CommandRunner`, an async callable that runs an argv *inside
the pod netns* (the plugin enters the namespace; tests use ``ip netns exec``). No shell is used
anywhere. Only anyio-neutral ``async``/``await`` is used here.

Design notes (measured with iptables 1.8.9 and nftables 1.0.6, nft and legacy backends):

* ``iptables-restore`` is atomic **per table**, not per blob: each ``COMMIT`` is its own
  transaction, so when the nat block fails the mangle block before it stays applied. A parse
  error (bad port, unknown option) aborts before anything is committed. Therefore a failed apply
  is followed by a cleanup restore that removes every ``ISTIO_*`` chain and our jumps, so a
  failed ADD never leaves partial redirection behind.
* Idempotency: one ``iptables-save`` per family is parsed and compared with what we would
  install (rules are compared after undoing ``iptables-save``'s normalisation, e.g. ``-m tcp``,
  hex marks, ``--set-xmark``). Equal: nothing is run. Otherwise a single restore per family both
  removes our old state (``-D`` our jumps from builtin chains, ``-F`` every ``ISTIO_*`` chain,
  ``-X`` the ones no longer needed) and installs the new rules, re-using existing chains instead
  of ``-N`` so "Chain already exists" cannot happen.
* Backend detection (Istio's heuristic): legacy only when ``iptables-legacy-save`` already
  prints >= 3 lines in the pod netns, else nft. Which *binaries* exist is cached per process
  (host filesystem, namespace independent); the legacy-rules probe is **not** cached because
  it depends on each pod's namespace (another chained plugin may have used legacy there). When
  legacy wins, the probe's output doubles as the state dump, saving one exec. When the
  namespace has no legacy table at all (its ``/proc/net/ip{,6}_tables_names`` is empty, as in
  a fresh pod netns) that save would print nothing, so a :class:`LegacyTablesProbe` (a
  ``/proc`` read in the namespace) lets the caller skip the exec; the rule is unchanged.
* NSS: ``iptables-save``/``nft -n`` print numbers, but ``iptables-restore`` still calls
  ``getpwnam()`` for ``--uid-owner`` (istio#48416); a runner that cares should run with a
  ``/dev/null`` ``nsswitch.conf`` (a mount namespace) and ``LC_ALL=C``. Legacy runs with
  ``--wait=30``; point ``XTABLES_LOCKFILE`` at a per-netns file in the runner's environment to
  avoid contention with kube-proxy on the host lock.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Literal, Protocol

from ._iptables_rules import (
    BUILTIN_CHAINS,
    CHAIN_PREFIX,
    TABLES,
    Family,
    IptRule,
    build_rules,
    chains_in_order,
    final_chain_rules,
)
from ._nftables_rules import NFT_TABLES, nft_tables_used, render_nftables
from ._redirect import RedirectSpec

__all__ = [
    "Backend",
    "CommandRunner",
    "LegacyTablesProbe",
    "RedirectApplyError",
    "apply_iptables",
    "apply_nftables",
    "clear_binary_cache",
    "detect_backend",
    "remove_iptables",
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


def clear_binary_cache() -> None:
    """Forget which iptables binaries exist (for tests or after a host change)."""
    _have.cache_clear()


@dataclass
class _Detected:
    backend: Backend
    save_output: bytes | None = None  # the legacy probe's dump, re-usable as state


async def _detect(
    runner: CommandRunner,
    family: Family,
    override: Backend | None,
    legacy_tables: LegacyTablesProbe | None = None,
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


async def detect_backend(
    runner: CommandRunner, family: Family, override: Backend | None = None
) -> Backend:
    """Pick the iptables backend for one family in the runner's namespace.

    :param runner: runs commands in the pod netns.
    :param family: 4 or 6.
    :param override: force a backend; otherwise ``$FORCE_IPTABLES_BINARY`` (``legacy``/``nft``)
        is honoured, then legacy if legacy rules already exist there, else nft.
    :returns: ``"legacy"`` or ``"nft"``.
    :raises RedirectApplyError: when neither backend is installed.
    """
    return (await _detect(runner, family, override)).backend


# --------------------------------------------------------------------------- iptables-save parsing


@dataclass
class _TableState:
    chains: set[str] = field(default_factory=set)  # ISTIO_* chains
    rules: dict[str, list[str]] = field(default_factory=dict)  # chain -> save-format args


def _parse_save(text: str) -> dict[str, _TableState]:
    tables: dict[str, _TableState] = {}
    current: _TableState | None = None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            current = tables.setdefault(line[1:].strip(), _TableState())
        elif current is None or line == "COMMIT":
            continue
        elif line.startswith(":"):
            name = line[1:].split(" ", 1)[0]
            if name.startswith(CHAIN_PREFIX):
                current.chains.add(name)
        elif line.startswith("-A "):
            _, chain, *rest = line.split(" ", 2)
            current.rules.setdefault(chain, []).append(rest[0] if rest else "")
    return tables


# iptables-save rewrites some of what we write; undo that so both sides compare equal.
_IMPLICIT_MODULES = {"tcp", "udp"}
_FULL_MASK = "0xffffffff"


def _num(value: str) -> str:
    try:
        return str(int(value, 0))
    except ValueError:
        return value


def _canonical(args: str | Sequence[str]) -> tuple[tuple[str, ...], ...]:
    """Order-insensitive canonical form of a rule's arguments.

    Options are grouped with their values (and a leading ``!``), normalised, and sorted, so
    ``-o lo -s X`` equals ``-s X -o lo`` and ``-p tcp --dport 1`` equals ``-p tcp -m tcp
    --dport 1``. The target part (``-j`` and what follows) keeps its order.
    """
    words = args.split() if isinstance(args, str) else list(args)
    if "-j" in words:
        j = words.index("-j")
        match_words, target_words = words[:j], words[j:]
    else:
        match_words, target_words = words, []
    items: list[tuple[str, ...]] = []
    i, neg = 0, False
    while i < len(match_words):
        w = match_words[i]
        if w == "!":
            neg = True
            i += 1
            continue
        values: list[str] = []
        i += 1
        while i < len(match_words) and not match_words[i].startswith("-") and match_words[i] != "!":
            values.append(match_words[i])
            i += 1
        if w == "-m" and values and values[0] in _IMPLICIT_MODULES:
            neg = False
            continue
        if w == "--mark":
            values = [_num(v.removesuffix("/" + _FULL_MASK)) for v in values]
        if w == "--dports":
            values = [",".join(values)]
        items.append((("!",) if neg else ()) + (w, *values))
        neg = False
    return (*sorted(items), *_canonical_target(target_words))


def _canonical_target(words: list[str]) -> list[tuple[str, ...]]:
    if not words:
        return []
    target = words[1] if len(words) > 1 else ""
    opts: dict[str, str] = {}
    i = 2
    while i < len(words):
        key = words[i]
        value = words[i + 1] if i + 1 < len(words) and not words[i + 1].startswith("--") else ""
        opts[key] = value
        i += 2 if value else 1
    if "--to-port" in opts:
        opts["--to-ports"] = opts.pop("--to-port")
    if "--set-xmark" in opts:
        val = opts.pop("--set-xmark")
        opts["--set-mark"] = val.removesuffix("/" + _FULL_MASK)
    for key in ("--set-mark", "--mark"):
        if key in opts:
            opts[key] = _num(opts[key])
    if "--tproxy-mark" in opts:
        mark, _, mask = opts["--tproxy-mark"].partition("/")
        opts["--tproxy-mark"] = f"{_num(mark)}/{_num(mask or _FULL_MASK)}"
    for key in ("--nfmask", "--ctmask"):
        if opts.get(key) == _FULL_MASK:
            del opts[key]
    if opts.get("--on-ip") in ("0.0.0.0", "::"):
        del opts["--on-ip"]
    return [("-j", target), *sorted((k, v) for k, v in opts.items())]


def _is_ours_in_builtin(args: str, ours: Iterable[tuple[tuple[str, ...], ...]]) -> bool:
    words = args.split()
    for flag in ("-j", "-g"):
        if flag in words:
            idx = words.index(flag)
            if idx + 1 < len(words) and words[idx + 1].startswith(CHAIN_PREFIX):
                return True
    return _canonical(args) in set(ours)


def _diff(state: dict[str, _TableState], rules: Sequence[IptRule]) -> list[str]:
    """What differs between the saved state and the rules we would install."""
    problems: list[str] = []
    wanted = final_chain_rules(rules)
    want_chains: dict[str, set[str]] = {t: set() for t in TABLES}
    for table, chain in wanted:
        if chain not in BUILTIN_CHAINS:
            want_chains[table].add(chain)
    for table in sorted(set(TABLES) | set(state)):
        have = state.get(table, _TableState())
        want = want_chains.get(table, set())
        for chain in sorted(want - have.chains):
            problems.append(f"{table}: chain {chain} missing")
        for chain in sorted(have.chains - want):
            problems.append(f"{table}: unexpected chain {chain}")
    for (table, chain), expected in wanted.items():
        have_rules = state.get(table, _TableState()).rules.get(chain, [])
        exp = [_canonical(r.args) for r in expected]
        if chain in BUILTIN_CHAINS:
            # Only our rules are judged, in their relative order; others are left alone.
            act = [_canonical(a) for a in have_rules if _is_ours_in_builtin(a, exp)]
        else:
            act = [_canonical(a) for a in have_rules]
        if act != exp:
            missing = [r.restore_line() for r, c in zip(expected, exp, strict=True) if c not in act]
            extra = [a for a in have_rules if _canonical(a) not in exp]
            notes = [f"missing: {m}" for m in missing]
            notes += [f"unexpected: -A {chain} {x}" for x in extra]
            detail = "; ".join(notes) or "rules out of order"
            problems.append(f"{table}/{chain}: {detail}")
    # Jumps into our chains from builtin chains we do not use at all in this spec.
    for table, st in state.items():
        for chain, lines in st.rules.items():
            if chain in BUILTIN_CHAINS and (table, chain) not in wanted:
                for a in lines:
                    if _is_ours_in_builtin(a, ()):
                        problems.append(f"{table}/{chain}: unexpected: -A {chain} {a}")
    return problems


def _restore_text(state: dict[str, _TableState], rules: Sequence[IptRule], install: bool) -> str:
    """One restore blob that removes our old state and (optionally) installs ``rules``."""
    ours_builtin: dict[tuple[str, str], list[tuple[tuple[str, ...], ...]]] = {}
    for (table, chain), rs in final_chain_rules(rules).items():
        if chain in BUILTIN_CHAINS:
            ours_builtin[(table, chain)] = [_canonical(r.args) for r in rs]
    need: dict[str, list[str]] = {t: [] for t in TABLES}
    if install:
        for tbl, chains in chains_in_order(rules).items():
            need[tbl] = chains
    lines: list[str] = []
    for table in TABLES:
        have = state.get(table, _TableState())
        body: list[str] = []
        for chain, args_list in have.rules.items():
            if chain not in BUILTIN_CHAINS:
                continue
            for args in args_list:
                if _is_ours_in_builtin(args, ours_builtin.get((table, chain), [])):
                    body.append(f"-D {chain} {args}")
        # Flush every chain of ours first so no references remain, then drop the unneeded.
        body.extend(f"-F {c}" for c in sorted(have.chains))
        body.extend(f"-X {c}" for c in sorted(have.chains - set(need[table])))
        body.extend(f"-N {c}" for c in need[table] if c not in have.chains)
        body.extend(r.restore_line() for r in rules if install and r.table == table)
        if body:
            lines.extend([f"*{table}", *body, "COMMIT"])
    return "".join(line + "\n" for line in lines)


async def _family_state(
    runner: CommandRunner,
    family: Family,
    backend: Backend | None,
    legacy_tables: LegacyTablesProbe | None = None,
) -> tuple[Backend, dict[str, _TableState]]:
    detected = await _detect(runner, family, backend, legacy_tables)
    dump = detected.save_output
    if dump is None:
        dump = await _check(
            runner, [_tool(detected.backend, family, "save")], context=f"IPv{family} state"
        )
    return detected.backend, _parse_save(dump.decode(errors="replace"))


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
    a cleanup restore removes every ``ISTIO_*`` chain and our builtin-chain rules in every
    family handled so far, then the error is raised.

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
        if not _diff(state, rules):
            continue
        argv = _restore_argv(chosen, fam)
        text = _restore_text(state, rules, install=True)
        code, _, err = await runner(argv, text.encode())
        if code != 0:
            # Every requested family, not only those done so far: a half-redirected pod (v4
            # rules from an earlier ADD, none for v6) is worse than none while ADD is failing.
            await _cleanup(runner, [f for f, _ in plans], backend, legacy_tables)
            raise RedirectApplyError(argv, code, err, f"IPv{fam} rules")


async def _cleanup(
    runner: CommandRunner,
    families: Sequence[Family],
    backend: Backend | None,
    legacy_tables: LegacyTablesProbe | None = None,
) -> None:
    # Best effort: we are already failing; the original error is the one worth reporting.
    for fam in families:
        try:
            chosen, state = await _family_state(runner, fam, backend, legacy_tables)
        except RedirectApplyError:
            continue
        text = _restore_text(state, [], install=False)
        if text:
            await runner(_restore_argv(chosen, fam), text.encode())


async def remove_iptables(
    runner: CommandRunner,
    families: Iterable[Family],
    backend: Backend | None = None,
    legacy_tables: LegacyTablesProbe | None = None,
) -> None:
    """Remove every ``ISTIO_*`` chain and every builtin-chain jump into one.

    :param runner: runs commands in the pod netns.
    :param families: families to clean.
    :param backend: force a backend instead of detecting.
    :param legacy_tables: as for :func:`apply_iptables`.
    :raises RedirectApplyError: if the cleanup restore fails.
    """
    for fam in families:
        chosen, state = await _family_state(runner, fam, backend, legacy_tables)
        text = _restore_text(state, [], install=False)
        if text:
            await _check(runner, _restore_argv(chosen, fam), text.encode(), f"IPv{fam} cleanup")


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
        problems.extend(f"IPv{fam} {p}" for p in _diff(state, build_rules(spec, fam)))
    return problems


# --------------------------------------------------------------------------- nftables

_SCRATCH = "cnisdk-verify-"


def _nft_apply_script(spec: RedirectSpec, ipv6: bool) -> str:
    # "flush table" empties chains but keeps them, so a chain an earlier spec needed (say
    # istio-output-dns) would survive. Deleting all three tables first, inside the same
    # transaction, makes the result depend on the spec only; "add" before "delete" keeps the
    # delete from failing on an absent table. nft commits the whole file atomically, so
    # there is no moment without rules.
    reset = "".join(f"add table inet {t}\ndelete table inet {t}\n" for t in NFT_TABLES)
    return reset + render_nftables(spec, ipv6)


async def apply_nftables(runner: CommandRunner, spec: RedirectSpec, ipv6: bool) -> None:
    """Install Istio's native-nftables rules with one ``nft -f -`` transaction.

    The script deletes our three tables and re-creates the ones this spec needs (Istio's
    ``add`` + ``flush`` alone would keep chains an earlier spec created), so applying twice is
    a no-op in effect. ``nft -f`` is atomic: a failure leaves the previous ruleset untouched.

    :param runner: runs commands in the pod netns.
    :param spec: what to redirect.
    :param ipv6: also install the ``ip6`` rules.
    :raises RedirectApplyError: if ``nft`` fails.
    """
    await _check(
        runner, ["nft", "-f", "-"], _nft_apply_script(spec, ipv6).encode(), "nftables rules"
    )


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
    script = render_nftables(spec, ipv6)
    scratch_lines: list[str] = []
    for t in NFT_TABLES:
        scratch_lines += [f"add table inet {_SCRATCH}{t}", f"delete table inet {_SCRATCH}{t}"]
    for line in script.splitlines():
        line = line.replace(" inet istio-proxy-", f" inet {_SCRATCH}istio-proxy-")
        if line.startswith("add table "):
            line += " { flags dormant ; }"
        scratch_lines.append(line)
    cleanup = "".join(
        f"add table inet {_SCRATCH}{t}\ndelete table inet {_SCRATCH}{t}\n" for t in NFT_TABLES
    )
    try:
        await _check(
            runner, ["nft", "-f", "-"], "\n".join(scratch_lines).encode() + b"\n", "nftables verify"
        )
        out = await _check(
            runner, ["nft", "-n", "-s", "list", "ruleset"], context="nftables verify"
        )
    finally:
        await runner(["nft", "-f", "-"], cleanup.encode())
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
