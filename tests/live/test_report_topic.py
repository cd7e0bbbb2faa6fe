"""dismon report from a time range of the live alerts topic: only the alerts raised in that range."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from monitor.cli import main
from monitor.core.timeutil import format_ms
from tests.live.conftest import create_topics

HOUR = 3_600_000


def _alert(number: int, raised_ms: int) -> bytes:
    return orjson.dumps(
        {"alert_id": f"{number:032x}", "rule": "unpermitted_field", "severity": "critical", "agreement_id": "a1",
         "request_id": f"r{number}", "requester": {"agency": "ICE", "unit": "ERO"}, "event_time": format_ms(raised_ms),
         "detected_at": format_ms(raised_ms), "summary": "a field outside the agreement was disclosed",
         "subject_ref": f"{number:016x}", "details": {"disclosed_fields": ["tin"]}, "status": "firing"}
    )  # fmt: skip


def test_the_report_takes_the_alerts_raised_in_a_time_range(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    asyncio.run(create_topics(kafka_bootstrap, prefix))
    start = 1_780_000_000_000 - 1_780_000_000_000 % HOUR

    async def publish() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            for number in range(30):  # one an hour, over 30 hours, stamped with the hour it was raised
                at = start + number * HOUR
                await producer.send_and_wait(
                    f"{prefix}.alerts", _alert(number, at), key=b"%d" % number, timestamp_ms=at
                )
        finally:
            await producer.stop()

    asyncio.run(publish())
    out = tmp_path / "report.html"
    code = main(["report", "--bootstrap-servers", kafka_bootstrap, "--topic-prefix", prefix, "--from",
                 format_ms(start + 5 * HOUR), "--to", format_ms(start + 15 * HOUR), "--out", str(out)])  # fmt: skip
    assert code == 0
    total = re.search(r'id="findings-table" data-total="(\d+)"', out.read_text())
    assert total is not None and int(total.group(1)) == 10  # hours 5 to 14
