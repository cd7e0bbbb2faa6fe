"""``dismon canary``: proof that detection works, end to end, on a running pipeline.

Every interval it publishes a probe (monitor/core/canary.py) into the pipeline's input topics, as a producer
would, keyed by its request id, and reads the alerts topic for the probe's findings. A probe whose findings
all come back is counted as returned, with its round trip; one that has not come back within the timeout is
lost. ``dismon_canary_last_success_timestamp_seconds`` tells Prometheus when detection last worked
(the DismonDetectionBlind alert), whatever the worker's process says about itself.

The probe's events carry the wall-clock time: run the canary only against a pipeline whose events are current
(its watermark follows the wall clock), never against a replay of old traffic.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from monitor.core.canary import CANARY_FINDINGS, probe
from monitor.live.kafka import KafkaSettings, assign_all, broker_errors
from monitor.outputs.metrics import CanaryMetrics

log = logging.getLogger("dismon.canary")


@dataclass
class _Probe:
    sent_s: float  # monotonic
    alerts: set[str] = field(default_factory=set)


class Canary:
    def __init__(
        self,
        kafka: KafkaSettings,
        interval_s: float,
        timeout_s: float,
        metrics: CanaryMetrics,
        wall_s: Callable[[], float] = time.time,
    ) -> None:
        self.kafka, self.interval_s, self.timeout_s, self.metrics = kafka, interval_s, timeout_s, metrics
        self._wall_s = wall_s
        self._pending: dict[str, _Probe] = {}
        self.returned = self.lost = 0

    async def run(self, stop: asyncio.Event, probes: int | None = None) -> None:
        """Probe every interval until ``stop`` is set, or until ``probes`` probes have returned or been lost."""
        consumer = await alerts_from_now(self.kafka)
        producer = AIOKafkaProducer(**self.kafka.client_options(), linger_ms=0)
        await producer.start()
        try:
            sent, next_s = 0, time.monotonic()
            while not stop.is_set() and (probes is None or self.returned + self.lost < probes):
                now = time.monotonic()
                if now >= next_s and (probes is None or sent < probes):
                    await self._send(producer)
                    sent, next_s = sent + 1, now + self.interval_s
                for messages in (await consumer.getmany(timeout_ms=200)).values():
                    for message in messages:
                        self._seen(message.value)
                self._expire()
        finally:
            await producer.stop()
            await consumer.stop()

    async def _send(self, producer: AIOKafkaProducer) -> None:
        request_id = f"canary-{uuid.uuid4().hex}"
        request, response = probe(request_id, int(self._wall_s() * 1000))
        key = request_id.encode()
        await producer.send_and_wait(self.kafka.topic("requests"), request, key=key)
        await producer.send_and_wait(self.kafka.topic("responses"), response, key=key)
        self._pending[request_id] = _Probe(time.monotonic())
        self.metrics.probes.labels("sent").inc()

    def _seen(self, value: bytes | None) -> None:
        try:
            alert = orjson.loads(value or b"{}")
        except orjson.JSONDecodeError:
            return
        pending = self._pending.get(alert.get("request_id") or "")
        if pending is None or alert.get("status") != "firing":
            return
        pending.alerts.add(alert.get("alert_id", ""))
        if len(pending.alerts) >= CANARY_FINDINGS:
            del self._pending[alert["request_id"]]
            self.returned += 1
            self.metrics.probes.labels("returned").inc()
            self.metrics.round_trip.observe(time.monotonic() - pending.sent_s)
            self.metrics.last_success.set(self._wall_s())

    def _expire(self) -> None:
        deadline = time.monotonic() - self.timeout_s
        for request_id, pending in list(self._pending.items()):
            if pending.sent_s < deadline:
                del self._pending[request_id]
                self.lost += 1
                self.metrics.probes.labels("lost").inc()
                log.warning(
                    "probe %s: %d of %d findings back within %.0f s: detection may be blind",
                    request_id, len(pending.alerts), CANARY_FINDINGS, self.timeout_s,
                )  # fmt: skip


@broker_errors
async def alerts_from_now(kafka: KafkaSettings) -> AIOKafkaConsumer:
    """A consumer of every partition of the alerts topic, positioned at its end before any probe goes out."""
    topic = kafka.topic("alerts")
    consumer = AIOKafkaConsumer(**kafka.client_options(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        assigned = await assign_all(consumer, topic, ": start the worker first (it creates its topics)")
        await consumer.seek_to_end(*assigned)
        for partition in assigned:
            await consumer.position(partition)
    except BaseException:
        await consumer.stop()
        raise
    return consumer
