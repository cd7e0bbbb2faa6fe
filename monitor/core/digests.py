"""Each event reduced on its own to what the join and the rules need of it: its *digest*.

Reducing is the stateless half of detection. It looks at one event and the policy, never at the
join state or the clock: the required-field checks, the keyed subject hashes, the request rules,
the fingerprint of a disclosure. The raw event is dropped after it, so no name or address reaches
the join state. :class:`~monitor.core.detector.Detector` reduces every event it is fed; a replay that
reads ahead (:mod:`monitor.replay.read_ahead`) reduces in its reading process instead and sends the
digests over (less than half an event's size), which gives the same digests: reducing is deterministic
for a given policy and key.
"""

from __future__ import annotations

import hashlib

import msgspec

from monitor.core.cache import BoundedCache
from monitor.core.checks import RequiredFields, normalize
from monitor.core.events import Disposal, Event, Request, Response, disclosed_fields, encode
from monitor.core.findings import SubjectHasher, Violation
from monitor.core.join import DisclosureFacts, RequestFacts
from monitor.core.policy import Agreement, Policy
from monitor.core.rules import REQUEST_RULES

_LOW32 = 0xFFFFFFFF

# Digests cross a pipe in a replay that reads ahead (monitor/replay/read_ahead.py), as MessagePack arrays
# whose first element tells the type: a small integer, one byte on the wire.


class RequestDigest(msgspec.Struct, frozen=True, gc=False, array_like=True, tag=1):
    request_id: str
    batch_id: str | None
    facts: RequestFacts
    violations: tuple[Violation, ...]  # what the request rules found

    @property
    def agreement_id(self) -> str:
        return self.facts.agreement_id


class ResponseDigest(msgspec.Struct, frozen=True, gc=False, array_like=True, tag=2):
    request_id: str
    agreement_id: str
    disclosure: DisclosureFacts | None  # None when the response disclosed nothing


class DisposalDigest(msgspec.Struct, frozen=True, gc=False, array_like=True, tag=3):
    request_id: str
    agreement_id: str


Digest = RequestDigest | ResponseDigest | DisposalDigest


def name_part(hasher: SubjectHasher, role: str, raw: str | None) -> int:
    """32-bit keyed hash of a normalised name part (``role``: last or first; 0 when absent)."""
    norm = normalize(raw) if raw else ""
    return hasher.ref(role, norm) & _LOW32 if norm else 0


def subject_ref(hasher: SubjectHasher, last: str | None, first: str | None, dob: str | None) -> int:
    """A person's ``subject_ref`` as the reducer computes it for a request (``dismon ledger lookup``)."""
    name_key = name_part(hasher, "last", last) << 32 | name_part(hasher, "first", first)
    return hasher.ref(str(name_key), dob or "")


class Reducer:
    """Makes digests for one policy and subject key; caches what repeats (names, contexts, checks)."""

    def __init__(self, policy: Policy, hasher: SubjectHasher) -> None:
        self.hasher = hasher
        self._contexts: BoundedCache[tuple[str, str, str | None], tuple[str, str, str | None]] = BoundedCache()
        self._last_names: BoundedCache[str, int] = BoundedCache()  # raw name part -> keyed hash of its normal form
        self._first_names: BoundedCache[str, int] = BoundedCache()
        self._statutes: BoundedCache[str, str] = BoundedCache()
        self.set_policy(policy)

    def set_policy(self, policy: Policy) -> None:
        self.policy = policy
        self._required = {
            (agreement.id, agreement.version): (
                RequiredFields(agreement.identifying_fields, agreement.placeholder_values, agreement.address_forms),
                RequiredFields(agreement.legal_basis_fields, agreement.placeholder_values),
            )
            for agreement in policy.all_versions()
        }

    def reduce(self, event: Event, event_ms: int) -> Digest:
        if isinstance(event, Request):
            agreement = self.policy.agreement_at(event.agreement_id, event_ms)  # the version in force then
            violations: tuple[Violation, ...] = ()
            for rule in REQUEST_RULES:
                found = rule.check_request(event, agreement, event_ms)
                if found:
                    violations += tuple(found)
            return RequestDigest(
                event.request_id, event.batch_id, self._request_facts(event, agreement, event_ms), violations
            )
        if isinstance(event, Response):
            fields = disclosed_fields(event)
            disclosure = self._disclosure_facts(event, fields, event_ms) if fields else None
            return ResponseDigest(event.request_id, event.agreement_id, disclosure)
        assert isinstance(event, Disposal)
        return DisposalDigest(event.request_id, event.agreement_id)

    def _request_facts(self, request: Request, agreement: Agreement | None, event_ms: int) -> RequestFacts:
        identifying: tuple[tuple[str, str], ...] = ()
        legal: tuple[tuple[str, str], ...] = ()
        if agreement is not None:
            identifying_check, legal_check = self._required[(agreement.id, agreement.version)]
            identifying = identifying_check.missing(request)
            legal = legal_check.missing(request)
        requester, name = request.requester, request.subject.name
        # One shared copy of each (agreement, agency, unit) triple instead of a million equal strings.
        context = (request.agreement_id, requester.agency, requester.unit)
        context = self._contexts.get(context) or self._contexts.put(context, context)
        name_key = self._name_part(self._last_names, "last", name.last) << 32 | self._name_part(
            self._first_names, "first", name.first
        )
        basis = request.legal_basis
        statute = basis.statute if basis is not None else None
        if statute:
            statute = self._statutes.get(statute) or self._statutes.put(statute, statute)  # a few, repeated
        return RequestFacts(
            context[0],
            context[1],
            context[2],
            event_ms,
            identifying,
            legal,
            self.hasher.ref(str(name_key), request.subject.dob or ""),
            name_key,
            statute,
            basis.case_id if basis is not None else None,
        )

    def _name_part(self, cache: BoundedCache[str, int], role: str, raw: str | None) -> int:
        """32-bit keyed hash of a normalised name part (0 when absent); names repeat, so it is cached."""
        if not raw:
            return 0
        part = cache.get(raw)
        if part is None:
            part = cache.put(raw, name_part(self.hasher, role, raw))
        return part

    def _disclosed_name_key(self, raw: msgspec.Raw | None) -> int | None:
        if raw is None:
            return None
        try:
            value = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            return None
        if isinstance(value, dict):
            last, first = value.get("last"), value.get("first")
        elif isinstance(value, str):
            parts = value.replace(",", " ").split()
            first, last = (parts[0], parts[-1]) if len(parts) > 1 else (None, parts[0] if parts else None)
        else:
            return None
        if not isinstance(last, str) or not normalize(last):
            return None
        first_part = self._name_part(self._first_names, "first", first if isinstance(first, str) else None)
        return self._name_part(self._last_names, "last", last) << 32 | first_part

    def _disclosure_facts(self, response: Response, fields: tuple[str, ...], event_ms: int) -> DisclosureFacts:
        match = response.match
        disclosed = response.disclosed or {}
        return DisclosureFacts(
            fingerprint=hashlib.blake2b(encode(response), digest_size=8).hexdigest(),
            agreement_id=response.agreement_id,
            responder=response.responder.agency,
            responded_ms=event_ms,
            fields=fields,
            match_status=match.status,
            match_score=match.score,
            matched_on=frozenset(match.matched_on or ()),
            name_key=self._disclosed_name_key(disclosed.get("name")) if "name" in fields else None,
        )


def request_terms(agreement: Agreement | None) -> tuple[object, ...] | None:
    """What of an agreement version a request's digest depends on (the required-field checks and the request
    rules, :data:`~monitor.core.rules.REQUEST_RULES`): versions with equal terms give equal digests."""
    if agreement is None:
        return None
    return (
        agreement.identifying_fields,
        agreement.legal_basis_fields,
        agreement.placeholder_values,
        agreement.address_forms,
        agreement.requesters,
        agreement.authorized_signatories,
    )


class PairReducer:
    """Reduces each event under two policies (``dismon policy diff``), once where they cannot differ: a
    response or a disposal is reduced without the policy, a request by the :func:`request_terms` of the
    agreement version in force, so when both policies' versions have equal terms the first digest serves
    both. The two are then one object: fit for digests that are encoded and sent on (each side decodes its
    own copy, as ``dismon policy diff``'s reading process does), not for two joins in one process, since a
    join keeps parts of a digest and changes them."""

    def __init__(self, first: Reducer, second: Reducer) -> None:
        self.first, self.second = first, second
        self._equal: dict[tuple[int, int], bool] = {}  # (id of first's version, id of second's) -> equal

    def reduce(self, event: Event, event_ms: int) -> tuple[Digest, Digest]:
        one = self.first.reduce(event, event_ms)
        if type(event) is not Request:
            return one, one
        mine = self.first.policy.agreement_at(event.agreement_id, event_ms)
        theirs = self.second.policy.agreement_at(event.agreement_id, event_ms)
        key = (id(mine), id(theirs))
        equal = self._equal.get(key)
        if equal is None:
            equal = self._equal[key] = request_terms(mine) == request_terms(theirs)
        return (one, one) if equal else (one, self.second.reduce(event, event_ms))
