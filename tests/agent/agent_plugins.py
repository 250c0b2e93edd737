"""Plugins for the agent tests only (served with ``cnisdk agent --plugin TYPE=MODULE:CLASS``).

``slow`` sleeps for its config's ``sleep`` seconds in ADD (after touching ``marker``, so a
test knows the request is running); ``boom`` raises from ADD, which must become error 999.
"""

from __future__ import annotations

import anyio

from cnisdk import Context, NetConf, Plugin, Result


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
        assert ctx.prev_result is not None
        return ctx.prev_result


class Boom(Plugin[NetConf]):
    """ADD fails with an unexpected exception."""

    async def add(self, ctx: Context[NetConf]) -> Result:
        raise RuntimeError("boom: the plugin\nbroke")
