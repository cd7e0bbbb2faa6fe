"""The live worker's settings, validated by the command line and frozen."""

from __future__ import annotations

from dataclasses import dataclass, field

from monitor.core.events import DEFAULT_MAX_EVENT_BYTES
from monitor.core.joiner import DEFAULT_MAX_JOIN_ENTRIES
from monitor.live.kafka import DEFAULT_CHANGELOG_SEGMENT_MS, KafkaSettings
from monitor.outputs.alertmanager import DEFAULT_HOLD_MS, DEFAULT_RUNBOOK_BASE


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    kafka: KafkaSettings
    partitions: int = 4  # for topics the worker creates
    allowed_lateness_ms: int = 10 * 60_000
    idle_ms: int | None = 30_000  # None: never advance the watermark on wall-clock time
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    session_timeout_s: float = 30.0
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    alertmanager_url: str | None = None  # also push findings there
    alertmanager_hold_ms: int = DEFAULT_HOLD_MS
    runbook_base: str = DEFAULT_RUNBOOK_BASE
    max_join_entries: int | None = DEFAULT_MAX_JOIN_ENTRIES
    dead_letter_payload: bool = False  # keep the offending bytes (base64) in dead-letter records: personal data!
    changelog_segment_ms: int = DEFAULT_CHANGELOG_SEGMENT_MS  # see monitor.live.kafka.changelog_topic_config
    # The accounting of disclosures on: its checkpoints' signing key (PEM), never in a repr or a log line.
    ledger_key: bytes | None = field(default=None, repr=False)
    ledger_interval_ms: int = 60_000  # between signed checkpoints
    instance_id: str | None = None  # static group membership (KIP-345): a restart keeps its partitions
    state_dir: str | None = None  # the join state's local copy (monitor/live/local_state.py); None: none kept
    standby: bool = True  # follow the other workers' changelog partitions for a warm failover
    state_dir_default: bool = False  # state_dir is the default: in use by another worker, run without one
