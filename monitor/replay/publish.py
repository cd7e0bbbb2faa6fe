"""``dismon replay --to-kafka``: publish historical logs into the topics, to backfill or rehearse.

Events go out in event-time order (the same merge as replay), each to
``<prefix>.<type>s`` with the ``request_id`` as key, the original line as
value and the event time as the Kafka timestamp. Invalid lines are not
published; they go to the dead-letter callback like in a replay. Missing
topics are created first, co-partitioned as the worker needs them (left to
the broker, they would get its default partition count, and the disposals
topic none at all until a disposal came).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaProducer

from monitor.core.events import Disposal, Request
from monitor.live.kafka import KafkaSettings, broker_errors, ensure_topics
from monitor.replay.sources import DeadLetter, ReadOptions, merged_events


@broker_errors
async def publish(
    kafka: KafkaSettings,
    paths: Iterable[str],
    on_dead_letter: Callable[[DeadLetter], None],
    options: ReadOptions,
    partitions: int,
) -> tuple[Counter[str], int]:
    invalid = 0

    def dead_letter(letter: DeadLetter) -> None:
        nonlocal invalid
        invalid += 1
        on_dead_letter(letter)

    await ensure_topics(kafka, partitions, group_topics=False)
    producer = AIOKafkaProducer(**kafka.client_options(), linger_ms=20, max_batch_size=1 << 20)
    try:
        await producer.start()
    except BaseException:
        await producer.stop()
        raise
    counts: Counter[str] = Counter()
    try:
        pending = []
        for event_ms, _seq, event, raw in merged_events(paths, dead_letter, options, keep_raw=True):
            kind = (
                "requests"
                if isinstance(event, Request)
                else "disposals"
                if isinstance(event, Disposal)
                else "responses"
            )
            topic = kafka.topic(kind)
            pending.append(await producer.send(topic, raw, key=event.request_id.encode(), timestamp_ms=event_ms))
            counts[topic] += 1
            if len(pending) >= 10_000:
                for future in pending:
                    await future
                pending.clear()
        for future in pending:
            await future
        await producer.flush()
    finally:
        await producer.stop()
    return counts, invalid
