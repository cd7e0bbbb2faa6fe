"""The join: digests in, findings and window facts out, on a watermark handed in from outside.

:class:`Joiner` owns the join state and the timers. It is fed one digest at a time (an event reduced on its
own by :mod:`monitor.core.digests`), in any order, with the watermark of whoever feeds it: the newest event
time minus the allowed lateness in a replay (:class:`~monitor.core.detector.Detector`), the minimum over a
worker's partitions live. It returns, in the order they arose, the findings of the joined rules and timers
and the window facts (:mod:`monitor.core.windows.facts`) for the windowed rules, which its caller hands to a
window stage. It never reads the wall clock, a file or Kafka.

Order independence: a response waits in the join state for its request until the watermark passes
``responded_at + orphan_grace``; timed rules fire when the watermark passes their deadline, and judge only
by event times. Any arrival order within the allowed lateness therefore gives the same set of alert ids.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from monitor.core.digests import Digest, DisposalDigest, RequestDigest, ResponseDigest
from monitor.core.findings import Finding, Violation, format_ref, make_finding
from monitor.core.join import (
    DUPLICATE_FIRED,
    SLA_DONE,
    DisclosureFacts,
    JoinEntry,
    JoinStore,
    RequestFacts,
    TimerWheel,
)
from monitor.core.ledger import AccountingEntry, entry_of
from monitor.core.observe import Observer
from monitor.core.policy import DEFAULT_JOIN_WINDOW, DEFAULT_ORPHAN_GRACE, Agreement, Policy
from monitor.core.rules import DISCLOSURE_RULES, DISPOSAL, DUPLICATE, ORPHAN, SLA
from monitor.core.timeutil import parse_duration_ms
from monitor.core.windows.facts import FACT_TYPES, DisclosureFact, Fact, JoinedFact, RequestFact, ResponseFact

#: Request ids held at most (a few hundred bytes each): beyond it, new ids are refused, counted and alerted on.
DEFAULT_MAX_JOIN_ENTRIES = 5_000_000
_DEFAULT_JOIN_WINDOW_MS = parse_duration_ms(DEFAULT_JOIN_WINDOW)
_DEFAULT_ORPHAN_GRACE_MS = parse_duration_ms(DEFAULT_ORPHAN_GRACE)
Output = Finding | Fact
_NOTHING: Sequence[Output] = ()
_KIND: Mapping[type, str] = {RequestDigest: "request", ResponseDigest: "response", DisposalDigest: "disposal"}


@dataclass(slots=True)
class DetectorStats:
    requests: int = 0
    responses: int = 0
    disposals: int = 0
    late_events: int = 0
    refused: int = 0  # events of new request ids not joined because the join state was at its cap
    findings: Counter[str] = field(default_factory=Counter)

    @property
    def events(self) -> Counter[str]:
        counts = {"request": self.requests, "response": self.responses, "disposal": self.disposals}
        return Counter({kind: count for kind, count in counts.items() if count})


class Joiner:
    """Joins requests, responses and disposals by ``request_id``, runs the joined rules and the timers."""

    def __init__(
        self,
        policy: Policy,
        store: JoinStore | None = None,
        timers: TimerWheel | None = None,
        observer: Observer | None = None,
        max_entries: int | None = None,
        fact_types: frozenset[type[Fact]] = frozenset(FACT_TYPES),
        accounting: Callable[[AccountingEntry], None] | None = None,
    ) -> None:
        self.store: JoinStore = {} if store is None else store
        # Where the accounting entry of each judged disclosure goes (monitor/core/ledger.py), if anywhere.
        self.accounting = accounting
        self.timers = TimerWheel() if timers is None else timers
        self.stats = DetectorStats()
        self.max_event_ms: int | None = None
        self.watermark_ms: int | None = None
        self.observer = observer
        # A flood of distinct request ids must not end in an out-of-memory kill: past the cap, new ids are not
        # joined (counted as refused; the shells alert on it) and only the rules that need no join judge them.
        self.max_entries = max_entries
        self._out: list[Output] = []
        self.set_policy(policy, fact_types)

    def set_policy(self, policy: Policy, fact_types: frozenset[type[Fact]] | None = None) -> None:
        """Judge from now on by ``policy`` (a reload); join state and timers carry over. ``fact_types``: the
        window facts to make (all of them for a stage elsewhere; an inline stage names those it counts)."""
        self.policy = policy
        if fact_types is not None:
            self._requests, self._responses, self._disclosures, self._joins = (
                kind in fact_types for kind in (RequestFact, ResponseFact, DisclosureFact, JoinedFact)
            )

    # -- feeding -----------------------------------------------------------------------------

    def apply(
        self, digest: Digest, event_ms: int, watermark_ms: int | None = None, position: int = -1
    ) -> Sequence[Output]:
        """Join one digest; then move the watermark to ``watermark_ms`` (never backwards) and fire what is
        due. Returns the findings and window facts, in the order they arose. ``position``: where the caller
        read the event (an input offset), kept with the request or disclosure for :class:`JoinedFact`."""
        if self.watermark_ms is not None and event_ms < self.watermark_ms:
            self.stats.late_events += 1
            if self.observer is not None:
                self.observer.late()
        if self.max_event_ms is None or event_ms > self.max_event_ms:
            self.max_event_ms = event_ms
        if isinstance(digest, RequestDigest):
            self.stats.requests += 1
            self._on_request(digest, event_ms, position)
        elif isinstance(digest, ResponseDigest):
            self.stats.responses += 1
            self._on_response(digest, event_ms, position)
        else:
            self.stats.disposals += 1
            self._on_disposal(digest, event_ms)
        if self.observer is not None:
            self.observer.event(_KIND[type(digest)], digest.agreement_id)
        if watermark_ms is not None and (self.watermark_ms is None or watermark_ms > self.watermark_ms):
            self.watermark_ms = watermark_ms
        if self.watermark_ms is not None:
            next_due = self.timers.next_due()
            if next_due is not None and next_due <= self.watermark_ms:
                self._fire_timers()
        return self._take() if self._out else _NOTHING  # most events give nothing: skip the call

    def advance_to(self, watermark_ms: int) -> Sequence[Output]:
        """Move the watermark forward (``--until``, the idle advance, a worker's clock); never backwards."""
        if self.watermark_ms is None or watermark_ms > self.watermark_ms:
            self.watermark_ms = watermark_ms
            self._fire_timers()
        return self._take() if self._out else _NOTHING

    def _take(self) -> Sequence[Output]:
        out, self._out = self._out, []
        return out

    # -- events ------------------------------------------------------------------------------

    def _on_request(self, request: RequestDigest, event_ms: int, position: int) -> None:
        facts = request.facts
        agreement = self.policy.agreement_at(facts.agreement_id, event_ms)
        for violation in request.violations:
            self._emit(violation, request.request_id, facts.agreement_id, facts)
        entry = self._entry(request.request_id, event_ms)
        if entry is None or entry.request is not None:
            return  # join state full; or a redelivered (or re-sent) request: the first one stands
        entry.request = facts
        entry.request_position = position
        if self.observer is not None and entry.answered_ms is not None:
            self.observer.joined(facts.agreement_id, entry.answered_ms - event_ms)
        if agreement is not None and self._requests:
            self._out.append(RequestFact(agreement.id, event_ms, request.batch_id, facts.agency, facts.unit))
        for disclosure in entry.disclosures or ():
            if not disclosure.resolved:
                self._resolve(request.request_id, entry, disclosure, orphan=False, paired=disclosure.position)
            elif disclosure.orphaned:
                self._late_join(request.request_id, entry, disclosure)
        self._schedule(request.request_id, entry)
        self.store[request.request_id] = entry  # write back: durable stores persist on assignment

    def _on_response(self, response: ResponseDigest, event_ms: int, position: int) -> None:
        request_id = response.request_id
        entry = self._entry(request_id, event_ms)
        if entry is None:
            self._judge_untracked(response)
            return
        if entry.answered_ms is None and entry.request is not None and self.observer is not None:
            self.observer.joined(response.agreement_id, event_ms - entry.request.submitted_ms)
        if entry.answered_ms is None or event_ms < entry.answered_ms:
            entry.answered_ms = event_ms
        disclosure = response.disclosure
        wanted = self._responses or self._disclosures
        agreement = self.policy.agreement_at(response.agreement_id, event_ms) if wanted else None
        if agreement is not None and self._responses:
            self._out.append(ResponseFact(agreement.id, event_ms, disclosure is not None))
        if disclosure is None:
            if entry.scheduled_ms is None:  # a new entry (response before request): it needs its expiry timer
                self._schedule(request_id, entry)
            if entry.answered_ms == event_ms:  # a new entry or an earlier answer: worth persisting
                self.store[request_id] = entry
            return  # an answer never makes anything due earlier
        disclosure.position = position
        if entry.disclosures is None:
            entry.disclosures = [disclosure]
        elif any(d.fingerprint == disclosure.fingerprint for d in entry.disclosures):
            return  # the same message delivered again (at-least-once transport)
        else:
            entry.disclosures.append(disclosure)
            if not entry.flags & DUPLICATE_FIRED:
                entry.flags |= DUPLICATE_FIRED
                self._emit(DUPLICATE.violation(entry.disclosures), request_id, response.agreement_id, entry.request)
        if agreement is not None and self._disclosures:
            self._out.append(DisclosureFact(agreement.id, disclosure.responded_ms))
        if entry.request is not None:
            self._resolve(request_id, entry, disclosure, orphan=False, paired=entry.request_position)
        self._schedule(request_id, entry)
        self.store[request_id] = entry

    def _judge_untracked(self, response: ResponseDigest) -> None:
        """Join state is full: the rules that need no request still judge the disclosure."""
        disclosure = response.disclosure
        if disclosure is None:
            return
        agreement = self.policy.agreement_at(response.agreement_id, disclosure.responded_ms)
        start = len(self._out)
        for rule in DISCLOSURE_RULES:
            if not rule.needs_request:
                for violation in rule.check_disclosure(disclosure, None, agreement):
                    self._emit(violation, response.request_id, response.agreement_id, None)
        if self.accounting is not None:
            self._account(response.request_id, disclosure, None, start)

    def _on_disposal(self, disposal: DisposalDigest, event_ms: int) -> None:
        entry = self._entry(disposal.request_id, event_ms)
        if entry is None:
            return
        if entry.disposals is None:
            entry.disposals = [event_ms]
        else:
            entry.disposals.append(event_ms)
        self._schedule(disposal.request_id, entry)
        self.store[disposal.request_id] = entry

    def _entry(self, request_id: str, event_ms: int) -> JoinEntry | None:
        """The request id's join entry, created if new; None when the join state is at its cap.

        A new entry is not stored here: every caller stores it once it is complete (one changelog write
        per event in the worker, not two)."""
        entry = self.store.get(request_id)
        if entry is None:
            if self.max_entries is not None and len(self.store) >= self.max_entries:
                self.stats.refused += 1
                if self.observer is not None:
                    self.observer.refused()
                return None
            entry = JoinEntry(first_ms=event_ms)
        elif event_ms < entry.first_ms:
            entry.first_ms = event_ms
        return entry

    # -- rules -------------------------------------------------------------------------------

    def _resolve(
        self, request_id: str, entry: JoinEntry, disclosure: DisclosureFacts, orphan: bool, paired: int = -1
    ) -> None:
        """Run the disclosure rules on a disclosure now joined to its request (or declared an orphan);
        ``paired``: the position of whichever of the two arrived first."""
        agreement = self.policy.agreement_at(disclosure.agreement_id, disclosure.responded_ms)
        facts = entry.request
        improper = False
        start = len(self._out)
        if orphan:
            self._emit(ORPHAN.violation(disclosure, _grace_ms(agreement)), request_id, disclosure.agreement_id, None)
            improper = True
        for rule in DISCLOSURE_RULES:
            if rule.needs_request and facts is None:
                continue
            for violation in rule.check_disclosure(disclosure, facts, agreement):
                self._emit(violation, request_id, disclosure.agreement_id, facts)
                improper = improper or violation.severity == "critical"
        disclosure.resolved = True
        disclosure.orphaned = orphan
        disclosure.improper = improper
        if self.accounting is not None:
            self._account(request_id, disclosure, facts, start)
        if self.observer is not None:  # counted once joined (or orphaned), so the requester is known if it can be
            self.observer.disclosure(
                disclosure.agreement_id,
                facts.agency if facts else None,
                disclosure.fields,
                disclosure.responded_ms,
                improper,
            )
        if agreement is not None and facts is not None and self._joins:
            self._out.append(JoinedFact(agreement.id, disclosure.responded_ms, facts.unit, paired))

    def _account(self, request_id: str, disclosure: DisclosureFacts, facts: RequestFacts | None, start: int) -> None:
        """The accounting entry of a disclosure just judged, with the findings made since ``start``."""
        assert self.accounting is not None
        findings = [item for item in self._out[start:] if type(item) is Finding]
        self.accounting(
            entry_of(
                findings,
                event_time_ms=disclosure.responded_ms,
                agreement_id=disclosure.agreement_id,
                request_id=request_id,
                agency=facts.agency if facts else None,
                unit=facts.unit if facts else None,
                fields=disclosure.fields,
                statute=facts.statute if facts else None,
                case_id=facts.case_id if facts else None,
                subject_ref=format_ref(facts.subject_ref) if facts else None,
            )
        )

    def _late_join(self, request_id: str, entry: JoinEntry, disclosure: DisclosureFacts) -> None:
        """A request that arrived after its response was declared an orphan: still check the pair."""
        agreement = self.policy.agreement_at(disclosure.agreement_id, disclosure.responded_ms)
        for rule in DISCLOSURE_RULES:
            if rule.needs_request:
                for violation in rule.check_disclosure(disclosure, entry.request, agreement):
                    self._emit(violation, request_id, disclosure.agreement_id, entry.request)

    def _emit(self, violation: Violation, request_id: str, agreement_id: str, facts: RequestFacts | None) -> None:
        requester = {"agency": facts.agency, "unit": facts.unit} if facts else None
        self._append(violation, agreement_id, request_id, requester, format_ref(facts.subject_ref) if facts else None)

    def _append(
        self,
        violation: Violation,
        agreement_id: str,
        request_id: str | None,
        requester: Mapping[str, str | None] | None,
        subject_ref: str | None,
    ) -> None:
        version = self.policy.version_label(agreement_id, violation.event_time_ms)
        finding = make_finding(violation, agreement_id, request_id, requester, subject_ref, self.max_event_ms, version)
        if finding.status == "firing":
            self.stats.findings[finding.rule] += 1
        self._out.append(finding)

    # -- timers ------------------------------------------------------------------------------

    def _next_due(self, entry: JoinEntry) -> int:
        """The earliest event time at which something about this entry must be looked at again."""
        facts = entry.request
        policy = self.policy
        agreement = policy.agreement_at(facts.agreement_id, facts.submitted_ms) if facts is not None else None
        due = entry.first_ms + (agreement.join_window_ms if agreement else _DEFAULT_JOIN_WINDOW_MS)
        if facts is not None and agreement is not None and agreement.response_sla_ms and not entry.flags & SLA_DONE:
            due = min(due, facts.submitted_ms + agreement.response_sla_ms)
        for disclosure in entry.disclosures or ():
            if not disclosure.resolved:
                grace = _grace_ms(policy.agreement_at(disclosure.agreement_id, disclosure.responded_ms))
                due = min(due, disclosure.responded_ms + grace)
            elif disclosure.improper and not disclosure.disposal_checked:
                deadline = _deadline_ms(policy.agreement_at(disclosure.agreement_id, disclosure.responded_ms))
                if deadline is not None:
                    due = min(due, disclosure.responded_ms + deadline)
        return due

    def restore(self, request_id: str, entry: JoinEntry) -> None:
        """Take over an entry recovered from a durable store (a restart or a rebalance): re-arm its timers."""
        entry.scheduled_ms = None
        self._schedule(request_id, entry)

    def restore_all(self, entries: Mapping[str, JoinEntry]) -> None:
        """:meth:`restore` for each of ``entries``, in one loop: a restart takes over a million of them."""
        next_due, schedule = self._next_due, self.timers.schedule
        for request_id, entry in entries.items():
            entry.scheduled_ms = schedule(request_id, next_due(entry))

    def _schedule(self, request_id: str, entry: JoinEntry) -> None:
        due = self._next_due(entry)
        if entry.scheduled_ms is None or due < entry.scheduled_ms:
            entry.scheduled_ms = self.timers.schedule(request_id, due)

    def _fire_timers(self) -> None:
        watermark = self.watermark_ms
        assert watermark is not None
        store = self.store
        for bucket, request_id in self.timers.pop_due(watermark):
            entry = store.get(request_id)
            if entry is None or entry.scheduled_ms != bucket:
                continue  # expired already, or superseded by an earlier schedule
            entry.scheduled_ms = None
            before = _durable_state(entry)
            if self._run_due(request_id, entry, watermark):
                del store[request_id]
            else:
                entry.scheduled_ms = self.timers.schedule(request_id, max(self._next_due(entry), watermark + 1))
                if _durable_state(entry) != before:  # write back only what must survive a restart
                    store[request_id] = entry

    def _run_due(self, request_id: str, entry: JoinEntry, watermark: int) -> bool:
        """Fire what is due; True when the entry has nothing left to wait for and may be dropped."""
        policy = self.policy
        facts = entry.request
        pending = False
        if facts is not None and not entry.flags & SLA_DONE:
            agreement = policy.agreement_at(facts.agreement_id, facts.submitted_ms)  # in force when it was asked
            sla = agreement.response_sla_ms if agreement else None
            if sla is None:
                entry.flags |= SLA_DONE
            elif watermark >= facts.submitted_ms + sla:
                entry.flags |= SLA_DONE
                if entry.answered_ms is None or entry.answered_ms > facts.submitted_ms + sla:
                    self._emit(SLA.violation(facts, sla), request_id, facts.agreement_id, facts)
            else:
                pending = True
        for disclosure in entry.disclosures or ():
            agreement = policy.agreement_at(disclosure.agreement_id, disclosure.responded_ms)
            if not disclosure.resolved:
                if watermark >= disclosure.responded_ms + _grace_ms(agreement):
                    self._resolve(request_id, entry, disclosure, orphan=True)
                else:
                    pending = True
            if disclosure.improper and not disclosure.disposal_checked:
                deadline = _deadline_ms(agreement)
                if deadline is None:
                    disclosure.disposal_checked = True
                elif watermark >= disclosure.responded_ms + deadline:
                    disclosure.disposal_checked = True
                    start, end = disclosure.responded_ms, disclosure.responded_ms + deadline
                    if not any(start <= at <= end for at in entry.disposals or ()):
                        self._emit(DISPOSAL.violation(disclosure, deadline), request_id, disclosure.agreement_id, facts)
                else:
                    pending = True
        agreement = policy.agreement_at(facts.agreement_id, facts.submitted_ms) if facts is not None else None
        window = agreement.join_window_ms if agreement else _DEFAULT_JOIN_WINDOW_MS
        return not pending and watermark >= entry.first_ms + window

    # -- introspection -----------------------------------------------------------------------

    def pending(self) -> dict[str, int]:
        """Join state sizes, for metrics and the replay summary (one pass over the state)."""
        entries = requests = orphans = open_improper = 0
        for entry in self.store.values():
            entries += 1
            if entry.request is not None and entry.answered_ms is None:
                requests += 1
            for disclosure in entry.disclosures or ():
                if not disclosure.resolved:
                    orphans += 1
                elif (
                    disclosure.improper
                    and not disclosure.disposal_checked
                    and not any(at >= disclosure.responded_ms for at in entry.disposals or ())
                ):
                    open_improper += 1
        return {
            "entries": entries,
            "unanswered_requests": requests,
            "pending_orphans": orphans,
            "open_improper": open_improper,
        }


def _durable_state(entry: JoinEntry) -> tuple[object, ...]:
    """What a timer may change in an entry that a restarted worker needs (not ``scheduled_ms``)."""
    return (
        entry.flags,
        tuple((d.resolved, d.orphaned, d.improper, d.disposal_checked) for d in entry.disclosures or ()),
    )


def _grace_ms(agreement: Agreement | None) -> int:
    return agreement.orphan_grace_ms if agreement else _DEFAULT_ORPHAN_GRACE_MS


def _deadline_ms(agreement: Agreement | None) -> int | None:
    return agreement.disposal_deadline_ms if agreement else None
