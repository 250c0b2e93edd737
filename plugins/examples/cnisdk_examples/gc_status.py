"""gc-status-example: keep a state file per attachment, and implement GC and STATUS (spec 1.1.0).

Shows the two verbs spec 1.1.0 added:

- **GC**: the runtime sends ``cni.dev/valid-attachments``, the attachments it still uses
  (the SDK gives them as ``ctx.valid_attachments``). The plugin removes what it holds for
  any other attachment: here, state files left by containers whose DEL never came.
- **STATUS**: the runtime asks whether the plugin can serve ADD now. The plugin raises a
  ``CNIError`` with code 50 (``PLUGIN_NOT_AVAILABLE``) when it cannot; here, when its state
  directory cannot be written.

Config::

    {"cniVersion": "1.1.0", "type": "gc-status-example", "stateDir": "/var/lib/cni/gc-status"}

State files are ``<stateDir>/<network name>/<containerID>.<ifname>.json``. The names in the
path were validated by the SDK (network name and container ID by Go's rules, the interface
name has no ``/``), so they cannot escape ``stateDir``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from pydantic import Field

from cnisdk import Attachment, CNIError, Context, ErrorCode, NetConf, Plugin, Result


class GCStatusConfig(NetConf):
    """The plugin's entry in a conflist."""

    state_dir: str = Field(
        default="/var/lib/cni/gc-status-example",
        alias="stateDir",
        description="Where the per-attachment state files live.",
    )


def network_dir(config: GCStatusConfig) -> Path:
    """The state directory of this config's network (GC only looks at its own network)."""
    return Path(config.state_dir) / config.name


def state_file(config: GCStatusConfig, attachment: Attachment) -> Path:
    """The state file of one attachment (container ID + interface name)."""
    return network_dir(config) / f"{attachment.container_id}.{attachment.ifname}.json"


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, so readers never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class GCStatus(Plugin[GCStatusConfig]):
    """Record each attachment on ADD; GC forgets the ones the runtime no longer has."""

    chained = True
    about = "CNI plugin gc-status-example (cnisdk example): GC and STATUS"

    async def add(self, ctx: Context[GCStatusConfig]) -> Result:
        prev = ctx.require_prev_result()  # always there: `chained = True` made sure
        record = {"containerID": ctx.container_id, "ifname": ctx.ifname, "netns": ctx.netns_path}
        path = state_file(ctx.config, Attachment(ctx.container_id, ctx.ifname))
        write_atomically(path, json.dumps(record).encode())
        ctx.log.info("recorded %s", path)
        return prev

    async def delete(self, ctx: Context[GCStatusConfig]) -> None:
        # DEL needs no namespace; missing_ok: a second DEL succeeds too.
        state_file(ctx.config, Attachment(ctx.container_id, ctx.ifname)).unlink(missing_ok=True)

    async def gc(self, ctx: Context[GCStatusConfig]) -> None:
        # The state files a valid attachment would have; every other file of ours is stale.
        keep = {state_file(ctx.config, a).name for a in ctx.valid_attachments}
        directory = network_dir(ctx.config)
        if not directory.is_dir():
            return  # nothing recorded yet
        for path in directory.glob("*.json"):
            if path.name not in keep:
                path.unlink(missing_ok=True)
                ctx.log.info("GC removed %s", path)

    async def status(self, ctx: Context[GCStatusConfig]) -> None:
        # Can ADD work right now? It needs to create files in the state directory. Try it:
        # os.access() would say yes to root even on a read-only file system.
        directory = network_dir(ctx.config)
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            with tempfile.TemporaryFile(dir=directory):
                pass
        except OSError as exc:
            raise CNIError(
                ErrorCode.PLUGIN_NOT_AVAILABLE,  # 50: the runtime should not send ADD yet
                f"state directory {directory} is not writable",
                str(exc),
            ) from exc
