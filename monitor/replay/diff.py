"""``dismon policy diff``: what a policy change would do to the findings on real history.

The logs are read and decoded once; every event goes to two detectors, one per policy, in the same
event-time order a replay uses, so each side finds exactly what ``dismon replay`` of that policy finds. On
two or more CPUs three processes share the work: one reads, decodes and reduces each event under both
policies; this one judges under the old policy and hands each batch of the new policy's digests, as they
came, to a third, which judges under the new one and sends its findings back at the end. The
difference is by ``(alert_id, status)``: an alert id names the rule, the agreement and what was found (a
request id, a window), never the policy file, so the same finding under both policies has the same id.
"""

from __future__ import annotations

import array
import contextlib
import multiprocessing
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import msgspec

from monitor.core.detector import Detector
from monitor.core.findings import SEVERITY_RANK, Finding
from monitor.errors import InputError
from monitor.replay.read_ahead import decode_digests, read_ahead_two
from monitor.replay.sources import DeadLetter, ReadOptions, merged_events

Key = tuple[str, str]  # (alert_id, status)
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(tuple[bytes, bytes]).decode


@dataclass(slots=True)
class Change:
    """Findings of one rule and agreement that one side has and the other has not."""

    count: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    examples: list[str] = field(default_factory=list)  # alert ids, the first few

    def add(self, finding: Finding) -> None:
        self.count += 1
        at = finding.event_time_ms
        self.first_ms = at if self.first_ms is None else min(self.first_ms, at)
        self.last_ms = at if self.last_ms is None else max(self.last_ms, at)
        if len(self.examples) < 3:
            self.examples.append(finding.alert_id)


@dataclass(slots=True)
class PolicyDiff:
    events: int = 0
    old: int = 0  # findings under each policy
    new: int = 0
    added: list[Finding] = field(default_factory=list)  # under the new policy only
    removed: list[Finding] = field(default_factory=list)  # under the old policy only

    def by_rule(self, findings: Iterable[Finding]) -> dict[tuple[str, str, str], Change]:
        """(rule, severity, agreement) -> the change."""
        changes: dict[tuple[str, str, str], Change] = {}
        for finding in findings:
            changes.setdefault((finding.rule, finding.severity, finding.agreement_id), Change()).add(finding)
        return dict(sorted(changes.items()))

    def lost_at_or_above(self, severity: str) -> int:
        return sum(1 for f in self.removed if SEVERITY_RANK[f.severity] >= SEVERITY_RANK[severity])


def run_diff(
    paths: Iterable[str],
    old: Detector,
    new: Detector,
    on_dead_letter: Callable[[DeadLetter], None],
    read: ReadOptions,
    until_ms: int | None = None,
    read_ahead: bool = False,
) -> PolicyDiff:
    """Every event of ``paths`` through both detectors; the findings each has that the other has not. With
    ``read_ahead`` a second process decodes each event once and reduces it under both policies, and a third
    judges under ``new`` (a detector like it, built there), so that this one only judges under ``old`` (files
    only, not stdin)."""
    by_old: dict[Key, Finding] = {}
    diff = PolicyDiff()
    if read_ahead:
        with _Judge(new) as judge:
            for times, one, two in read_ahead_two(paths, on_dead_letter, read, old.reducer, new.reducer):
                judge.send(times, two)
                for event_ms, digest in zip(array.array("q", times), decode_digests(one), strict=False):
                    diff.events += 1
                    if found := old.apply(digest, event_ms):  # most events find nothing: no call then
                        _keep(by_old, found)
            if until_ms is not None:
                _keep(by_old, old.advance_to(until_ms))
            by_new = judge.findings(until_ms)
    else:
        by_new = {}
        for event_ms, _seq, event in merged_events(paths, on_dead_letter, read):
            diff.events += 1
            # Each detector its own digest: the join keeps parts of it and changes them.
            if found := old.apply(old.reducer.reduce(event, event_ms), event_ms):
                _keep(by_old, found)
            if found := new.apply(new.reducer.reduce(event, event_ms), event_ms):
                _keep(by_new, found)
        if until_ms is not None:
            _keep(by_old, old.advance_to(until_ms))
            _keep(by_new, new.advance_to(until_ms))
    diff.old, diff.new = len(by_old), len(by_new)
    diff.added = [f for key, f in by_new.items() if key not in by_old]
    diff.removed = [f for key, f in by_old.items() if key not in by_new]
    return diff


class _Judge:
    """A process that judges digests under the new policy: batches in, its findings back at the end."""

    def __init__(self, like: Detector) -> None:
        context = multiprocessing.get_context("spawn")  # a clean child: no copies of this process's threads
        batches, self._batches = context.Pipe(duplex=False)  # (receiving end, sending end)
        self._findings, findings = context.Pipe(duplex=False)
        settings = (like.policy, like.reducer.hasher, like.allowed_lateness_ms, like.joiner.max_entries)
        self._process = context.Process(
            target=_judge, name="dismon-judge", daemon=True, args=(batches, findings, settings)
        )
        try:
            self._process.start()
        except OSError as exc:
            raise InputError(f"cannot start the judging process ({exc}); diff with --no-read-ahead") from exc
        finally:
            batches.close()
            findings.close()

    def send(self, times: bytes, digests: bytes) -> None:
        if times:  # an empty batch (the reading's last may be) would read as the end
            self._batches.send_bytes(_encode((times, digests)))

    def findings(self, until_ms: int | None) -> dict[Key, Finding]:
        self._batches.send_bytes(_encode((b"", b"" if until_ms is None else str(until_ms).encode())))
        try:
            answer: dict[Key, Finding] | BaseException = self._findings.recv()
        except EOFError:
            raise InputError(f"the judging process ended unexpectedly (exit code {self._process.exitcode})") from None
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def __enter__(self) -> _Judge:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._batches.close()  # the judge's end of file, if it is still waiting
        self._process.join(10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()
        self._findings.close()


def _judge(batches: Connection, out: Connection, settings: tuple[Any, ...]) -> None:
    """The judging process: a detector of ``settings`` fed the batches until the empty one (which carries
    ``until`` if any), then its findings back through ``out``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C is the diff's to handle
    policy, hasher, lateness_ms, max_entries = settings
    detector = Detector(policy, hasher, lateness_ms, max_entries=max_entries)
    found: dict[Key, Finding] = {}
    try:
        while True:
            times, digests = _decode(batches.recv_bytes())
            if not times:
                if digests:
                    _keep(found, detector.advance_to(int(digests)))
                break
            for event_ms, digest in zip(array.array("q", times), decode_digests(digests), strict=False):
                if hits := detector.apply(digest, event_ms):
                    _keep(found, hits)
        out.send(found)
    except EOFError:
        return  # the diff stopped early
    except Exception as exc:  # a bug: reported in the diff's process rather than lost with this one
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            out.send(InputError(f"judging failed: {exc!r}"))
    finally:
        out.close()


def _keep(into: dict[Key, Finding], findings: Iterable[Finding]) -> None:
    for finding in findings:
        into.setdefault((finding.alert_id, finding.status), finding)
