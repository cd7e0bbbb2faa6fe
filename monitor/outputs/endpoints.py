"""The worker's HTTP endpoints (aiohttp): /metrics, /healthz, /readyz and /debug/tasks.

Bound to loopback unless told otherwise (``--metrics-host``). ``/debug/tasks`` walks every asyncio task's
await chain, to see where a stalled worker waits.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from monitor.errors import UsageError

log = logging.getLogger("dismon.worker")


def listen(host: str, port: int) -> socket.socket:
    """The endpoints' socket, bound before anything else starts: a port in use is a usage error at once,
    not a crash after the worker has joined its group."""
    listener = None
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        listener = socket.socket(family, kind, proto)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(128)
    except OSError as exc:
        if listener is not None:
            listener.close()
        reason = exc.strerror or str(exc)
        raise UsageError(f"cannot serve metrics on {host}:{port}: {reason} (choose another --metrics-port)") from exc
    listener.setblocking(False)
    return listener


async def serve(registry: CollectorRegistry, not_ready: Callable[[], str | None], listener: socket.socket) -> None:
    """Start serving on ``listener`` (:func:`listen`); ``not_ready`` gives the reason the worker is not ready,
    or None."""

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
                frame = (
                    getattr(awaited, "cr_frame", None)
                    or getattr(awaited, "ag_frame", None)
                    or getattr(awaited, "gi_frame", None)
                )
                if frame is None:
                    lines.append(f"    (waiting on {type(awaited).__name__})")
                    break
                lines.append(f"    {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
                awaited = (
                    getattr(awaited, "cr_await", None)
                    or getattr(awaited, "ag_await", None)
                    or getattr(awaited, "gi_yieldfrom", None)
                )
                if awaited is None:
                    break
        return web.Response(text="\n".join(lines) + "\n")

    http = web.Application()
    http.add_routes(
        [
            web.get("/metrics", metrics),
            web.get("/readyz", ready),
            web.get("/healthz", live),
            web.get("/debug/tasks", tasks),
        ]
    )
    runner = web.AppRunner(http, access_log=None)
    await runner.setup()
    await web.SockSite(runner, listener).start()
    host, port = listener.getsockname()[:2]
    log.info("metrics and health on http://%s:%d/metrics, /healthz, /readyz", host, port)


def serve_in_thread(registry: CollectorRegistry, listener: socket.socket) -> None:
    """:func:`serve` from a daemon thread with its own event loop, for a command that is not asynchronous
    (``dismon replay --metrics-port``): the same endpoints as the worker's, always ready."""

    def run() -> None:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(serve(registry, lambda: None, listener))
        loop.run_forever()

    threading.Thread(target=run, name="dismon-metrics", daemon=True).start()
