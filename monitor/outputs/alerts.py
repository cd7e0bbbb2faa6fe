"""Where a finding and a dead letter leave the monitor, the same way in a replay and in the worker.

A finding is counted in the metrics, pushed to Alertmanager (live, when configured) and encoded as one SPEC §5
alert line, with ``detected_at`` from the one wall-clock read the caller passes in. A dead letter becomes a
record that says why and where (never the payload, unless asked for on the dead-letter topic).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping

import orjson

from monitor.core.findings import Finding
from monitor.core.timeutil import format_ms
from monitor.outputs.alertmanager import AlertmanagerSink
from monitor.outputs.metrics import Metrics

#: Bytes of an invalid message kept with ``--dead-letter-payload``.
MAX_DEAD_LETTER_PAYLOAD = 256 * 1024


class FindingSender:
    """Encodes findings as alert lines, counting and pushing each on the way out."""

    def __init__(
        self,
        now_ms: Callable[[], int],
        metrics: Metrics | None = None,
        alertmanager: AlertmanagerSink | None = None,
        shadow: bool = False,
    ) -> None:
        """``shadow``: the findings of a candidate policy (``--shadow-policy``), counted as such and never pushed."""
        self._now_ms = now_ms
        self.metrics = metrics
        self.alertmanager = None if shadow else alertmanager
        self.shadow = shadow

    def encode(self, finding: Finding) -> bytes:
        """The finding as an alert (JSON, no newline), counted and pushed."""
        now_ms = self._now_ms()
        if self.metrics is not None:
            if self.shadow:
                self.metrics.shadow_finding(finding)
            else:
                self.metrics.finding(finding, now_ms)
        if self.alertmanager is not None:
            self.alertmanager.submit(finding, now_ms)
        return orjson.dumps(finding.to_alert(now_ms))


def dead_letter_record(
    reason: str, where: Mapping[str, object], detected_ms: int, payload: bytes | None = None
) -> bytes:
    """A dead-letter record (JSON): the reason, where the input was (file and line, or topic, partition and
    offset), when it was refused, and with ``payload`` the first bytes of it, base64, for the dead-letter
    topic only: it may hold personal data."""
    record: dict[str, object] = {"reason": reason, **where, "detected_at": format_ms(detected_ms)}
    if payload:
        kept = payload[:MAX_DEAD_LETTER_PAYLOAD]
        record |= {"payload_b64": base64.b64encode(kept).decode(), "payload_truncated": len(payload) > len(kept)}
    return orjson.dumps(record)
