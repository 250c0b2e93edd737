"""Plugins for the agent tests only (served with ``cnisdk agent --plugin TYPE=MODULE:CLASS``).

``slow`` sleeps for its config's ``sleep`` seconds in ADD (after touching ``marker``, so a
test knows the request is running); ``boom`` raises from ADD, which must become error 999;
``netns`` runs code in ``CNI_NETNS`` and names what it found in its result.
"""

from __future__ import annotations

import os

import anyio

from cnisdk import Context, Interface, NetConf, Plugin, Result


class Slow(Plugin[NetConf]):
    """Pass prevResult through after sleeping."""

    chained = True
    about = "CNI plugin slow (agent tests)"

    async def add(self, ctx: Context[NetConf]) -> Result:
        extra = ctx.config.model_extra or {}
        marker = extra.get("marker")
        if isinstance(marker, str):
            await anyio.Path(marker).write_text(ctx.container_id)
        await anyio.sleep(float(extra.get("sleep", 0)))
        return ctx.require_prev_result()


class Boom(Plugin[NetConf]):
    """ADD fails with an unexpected exception."""

    async def add(self, ctx: Context[NetConf]) -> Result:
        raise RuntimeError("boom: the plugin\nbroke")


class NetnsProbe(Plugin[NetConf]):
    """ADD opens ``ctx.netns`` and runs a function in it; the one interface of the result is
    named ``inside`` when that function ran in ``CNI_NETNS``."""

    async def add(self, ctx: Context[NetConf]) -> Result:
        inside = await ctx.require_netns().run(os.stat, "/proc/thread-self/ns/net")
        target = os.stat(ctx.netns_path)
        same = (inside.st_dev, inside.st_ino) == (target.st_dev, target.st_ino)
        return Result(
            cniVersion="1.1.0", interfaces=[Interface(name="inside" if same else "elsewhere")]
        )
