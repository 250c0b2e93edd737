"""passthrough: the smallest chained plugin.

It logs what it received and returns the previous plugin's result unchanged; the SDK
converts it back to the config's ``cniVersion`` on the way out.
"""

from __future__ import annotations

from cnisdk import Context, NetConf, Plugin, Result


class Passthrough(Plugin[NetConf]):
    """Log the request and pass the previous result through."""

    chained = True  # ADD without a prevResult is refused before add() runs
    about = "CNI plugin passthrough (cnisdk example)"

    async def add(self, ctx: Context[NetConf]) -> Result:
        prev = ctx.require_prev_result()  # always there: `chained = True` made sure
        ctx.log.info(
            "ADD container=%s ifname=%s version=%s: %d interface(s), %d IP(s)",
            ctx.container_id,
            ctx.ifname,
            ctx.cni_version,
            len(prev.interfaces),
            len(prev.ips),
        )
        return prev

    async def delete(self, ctx: Context[NetConf]) -> None:
        ctx.log.info("DEL container=%s ifname=%s", ctx.container_id, ctx.ifname)
