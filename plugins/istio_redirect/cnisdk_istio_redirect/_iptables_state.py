"""What is installed against what a spec needs: ``iptables-save`` parsing, comparison, plans.

Pure functions, no I/O (``_apply`` runs the commands). ``iptables-save`` prints rules in its own
normal form (``-m tcp`` added, marks in hex, ``--set-xmark``), so both sides are compared in a
canonical, order-insensitive form of each rule's options. The plan for a family is one
``iptables-restore --noflush`` blob built from the dump: it removes our previous state and,
when installing, adds the spec's rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ._iptables_rules import (
    BUILTIN_CHAINS,
    CHAIN_PREFIX,
    TABLES,
    IptRule,
    chains_in_order,
    final_chain_rules,
)

__all__ = ["TableState", "diff", "parse_save", "restore_text"]


@dataclass
class TableState:
    """One table of an ``iptables-save`` dump, as far as it concerns us."""

    chains: set[str] = field(default_factory=set)  # ISTIO_* chains
    rules: dict[str, list[str]] = field(default_factory=dict)  # chain -> save-format args


def parse_save(text: str) -> dict[str, TableState]:
    """Parse ``iptables-save`` output.

    :param text: the dump.
    :returns: per table: our ``ISTIO_*`` chains and every chain's rules (``-A`` arguments).
    """
    tables: dict[str, TableState] = {}
    current: TableState | None = None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            current = tables.setdefault(line[1:].strip(), TableState())
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


def diff(state: dict[str, TableState], rules: Sequence[IptRule]) -> list[str]:
    """What differs between the saved state and the rules we would install.

    :param state: :func:`parse_save` of the family's ``iptables-save``.
    :param rules: the spec's rules for that family.
    :returns: human-readable problems; empty when the state is exactly ``rules``.
    """
    problems: list[str] = []
    wanted = final_chain_rules(rules)
    want_chains: dict[str, set[str]] = {t: set() for t in TABLES}
    for table, chain in wanted:
        if chain not in BUILTIN_CHAINS:
            want_chains[table].add(chain)
    for table in sorted(set(TABLES) | set(state)):
        have = state.get(table, TableState())
        want = want_chains.get(table, set())
        for chain in sorted(want - have.chains):
            problems.append(f"{table}: chain {chain} missing")
        for chain in sorted(have.chains - want):
            problems.append(f"{table}: unexpected chain {chain}")
    for (table, chain), expected in wanted.items():
        have_rules = state.get(table, TableState()).rules.get(chain, [])
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


def restore_text(state: dict[str, TableState], rules: Sequence[IptRule], *, install: bool) -> str:
    """One restore blob that removes our state and, with ``install``, installs ``rules``.

    Removed: our rules in builtin chains (jumps into an ``ISTIO_*`` chain, and any rule of
    ``rules`` in a builtin chain), then every ``ISTIO_*`` chain is flushed and the ones not
    re-used are deleted. Only what ``state`` holds is named, so nothing already gone can make
    the restore fail. With ``install``, existing chains are re-used instead of ``-N``, so
    "Chain already exists" cannot happen.

    :param state: :func:`parse_save` of the family's ``iptables-save``.
    :param rules: the spec's rules for that family.
    :param install: also add ``rules``; without it the blob only removes.
    :returns: the blob, or ``""`` when there is nothing to do.
    """
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
        have = state.get(table, TableState())
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
