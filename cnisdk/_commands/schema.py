"""``cnisdk schema TYPE``: print the JSON Schema of a plugin's config, for editors and CI."""

from __future__ import annotations

import argparse
import json
import sys

from cnisdk._commands import CommandError

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Print the JSON Schema (draft 2020-12) of the config of a plugin TYPE: a cnisdk plugin "
        "registered through the `cnisdk.plugins` entry point group, or a reference plugin of "
        "containernetworking/plugins (bridge, ptp, macvlan, ipvlan, vlan, host-device, "
        "loopback, dummy, tap; host-local, static, dhcp, which describe the ipam object; "
        "portmap, bandwidth, tuning, firewall, sbr, vrf). Every field has a description; "
        "keys the plugin does not declare are allowed, as the plugin accepts them. Point an "
        "editor's JSON schema setting or a CI check at it."
    )
    parser.epilog = "example: cnisdk schema istio-redirect > istio-redirect.schema.json"
    parser.add_argument("type", metavar="TYPE", help="a plugin type (see `cnisdk list`)")


def _type_hint(plugin_type: str) -> str:
    from cnisdk._suggest import closest
    from cnisdk._validate._schema import schema_types

    known = schema_types()
    if plugin_type in known:
        return ""
    guess = closest(plugin_type, known)
    return f"did you mean {guess!r}?" if guess else "see 'cnisdk list' and 'cnisdk schema --help'"


def run(args: argparse.Namespace) -> int:
    from cnisdk._validate._schema import SchemaError, plugin_schema

    try:
        schema = plugin_schema(args.type)
    except SchemaError as exc:
        raise CommandError(str(exc), _type_hint(args.type)) from None
    sys.stdout.write(json.dumps(schema, indent=2) + "\n")
    return 0
