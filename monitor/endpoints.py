"""The worker's HTTP endpoints (aiohttp): /metrics, /healthz, /readyz and /debug/tasks.

Bound to loopback unless told otherwise (``--metrics-host``). ``/debug/tasks`` walks every asyncio task's
await chain, to see where a stalled worker waits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger("dismon.worker")


async def serve(registry: CollectorRegistry, not_ready: Callable[[], str | None], host: str, port: int) -> None:
    """Start serving on ``host:port``; ``not_ready`` gives the reason the worker is not ready, or None."""

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def ready(_request: web.Request) -> web.Response:
        reason = not_ready()
        return web.Response(status=503, text=f"{reason}\n") if reason else web.Response(text="ready\n")

    async def live(_request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def tasks(_request: web.Request) -> web.Response:
        """Where every asyncio task is waiting, down the await chain: for diagnosing a stalled worker."""
        lines = []
        for task in asyncio.all_tasks():
            lines.append(f"--- {task.get_name()}")
            awaited: Any = task.get_coro()
            for _depth in range(40):
                frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None) or getattr(
                    awaited, "gi_frame", None)
                if frame is None:
                    lines.append(f"    (waiting on {type(awaited).__name__})")
                    break
                lines.append(f"    {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
                awaited = (getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
                           or getattr(awaited, "gi_yieldfrom", None))
                if awaited is None:
                    break
        return web.Response(text="\n".join(lines) + "\n")

    http = web.Application()
    http.add_routes([web.get("/metrics", metrics), web.get("/readyz", ready), web.get("/healthz", live),
                     web.get("/debug/tasks", tasks)])
    runner = web.AppRunner(http, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("metrics and health on http://%s:%d/metrics, /healthz, /readyz", host, port)
