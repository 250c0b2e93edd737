"""``cnisdk schema TYPE``: print the JSON Schema of a plugin's config, for editors and CI."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Print the JSON Schema (draft 2020-12, as pydantic writes it) of the config model of a "
        "plugin TYPE registered through the `cnisdk.plugins` entry point group. Point an "
        "editor's JSON schema setting or a CI check at it."
    )
    parser.epilog = "example: cnisdk schema istio-redirect > istio-redirect.schema.json"
    parser.add_argument("type", metavar="TYPE", help="a plugin type (see `cnisdk list`)")


def run(args: argparse.Namespace) -> int:
    from cnisdk import _discovery

    # Any: PluginEntry.load() is typed through a field named `type`, which mypy cannot resolve.
    plugin: Any
    try:
        plugin = _discovery.get_plugin(args.type).load()
    except _discovery.PluginLoadError as exc:
        sys.stderr.write(f"cnisdk schema: {exc}\n")
        return 1
    schema = plugin.config_model.model_json_schema(by_alias=True)
    sys.stdout.write(json.dumps(schema, indent=2) + "\n")
    return 0
