"""The policy file (SPEC §3): TOML in, frozen dataclasses out, validated once.

A broken file is refused whole with :class:`~monitor.errors.PolicyError`
naming the file, the line and key, and what is wrong; nothing downstream
ever sees a half-valid policy. Unknown keys are errors too, because a typo
in ``permited_fields`` must not silently permit everything.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from monitor.core.address import FORMS
from monitor.core.canary import CANARY_AGREEMENT
from monitor.core.checks import normalize
from monitor.core.timeutil import MS_PER_DAY, date_start_ms, parse_duration_ms, to_ms
from monitor.errors import PolicyError

#: Request fields a policy may require (SPEC §2).
REQUEST_FIELDS = frozenset(
    {
        "subject.name.first", "subject.name.last", "subject.address.street", "subject.address.city",
        "subject.address.state", "subject.address.zip", "subject.dob", "subject.tin",
        "requester.unit", "requester.user", "requester.signatory", "batch_id",
        "legal_basis.statute", "legal_basis.case_id", "legal_basis.removal_order",
        "legal_basis.criminal_investigation", "legal_basis.final_order_date",
        "legal_basis.tax_periods", "legal_basis.reason",
    }
)  # fmt: skip
MATCH_STATUSES = ("matched", "no_match", "ambiguous")
MATCH_KEYS = frozenset({"name", "address", "dob", "tin"})

DEFAULT_JOIN_WINDOW = "14d"
DEFAULT_ORPHAN_GRACE = "1h"


@dataclass(frozen=True, slots=True)
class Restriction:
    """A court order, injunction or suspension that forbids disclosing some fields for a time."""

    fields: frozenset[str]
    from_ms: int
    until_ms: int | None  # exclusive; None = open-ended
    requesters: frozenset[str] | None  # None binds every requester
    reason: str

    def forbids(self, field: str, at_ms: int, requester: str | None) -> bool:
        if field not in self.fields or at_ms < self.from_ms:
            return False
        if self.until_ms is not None and at_ms >= self.until_ms:
            return False
        # An unknown requester (orphan response) is bound: the monitor errs towards alerting.
        return self.requesters is None or requester is None or requester in self.requesters


@dataclass(frozen=True, slots=True)
class RequiredMatch:
    status: str
    min_score: float | None
    on: frozenset[str]


@dataclass(frozen=True, slots=True)
class RateSpikeConfig:
    """``disclosure_rate_spike``: a unit's disclosures per window against its own seasonal baseline."""

    window_ms: int = 7_200_000  # 2 h: a spike smeared over the responders' delays still stands out
    hop_ms: int = 900_000
    min_count: int = 10  # never page for fewer disclosures than this in one window
    factor: float = 4.0  # ... nor for less than this multiple of the baseline
    max_p_value: float = 1e-7  # Poisson tail probability of the count under the baseline
    warmup_windows: int = 20  # observed windows per seasonal slot before the slot may alert
    ewma_alpha: float = 0.1


@dataclass(frozen=True, slots=True)
class RatioDriftConfig:
    """``disclosure_ratio_drift``: CUSUM on the share of responses that disclose, per closed window."""

    window_ms: int = 3_600_000
    shift: float = 2.0  # the ratio change to detect, as a multiple of the baseline
    threshold: float = 15.0  # CUSUM decision threshold (log-likelihood ratio)
    warmup_responses: int = 3000
    ewma_alpha: float = 0.01  # baseline decay per window: it remembers about the last hundred windows


@dataclass(frozen=True, slots=True)
class Agreement:
    id: str
    requesters: frozenset[str]
    disclosers: frozenset[str]
    effective_from_ms: int
    effective_until_ms: int | None  # exclusive
    permitted_fields: frozenset[str]
    identifying_fields: tuple[str, ...]  # feed incomplete_request_disclosure
    legal_basis_fields: tuple[str, ...]  # feed missing_legal_basis_disclosure
    required_match: RequiredMatch | None
    response_sla_ms: int | None
    join_window_ms: int
    orphan_grace_ms: int
    disposal_deadline_ms: int | None
    max_disclosures_per_day: int | None
    max_batch_size: int | None
    rate_spike: RateSpikeConfig | None  # None: rule off for this agreement (on unless it says false)
    ratio_drift: RatioDriftConfig | None
    authorized_signatories: frozenset[str] | None
    placeholder_values: frozenset[str]  # normalised
    address_forms: frozenset[str]  # street-line forms (monitor.core.address.FORMS) that count as an address
    restrictions: tuple[Restriction, ...]
    version: str = ""  # the version label, when the agreement has several versions (or names its one)
    after_gap: bool = False  # this version starts after a period with no version in force, on purpose

    @property
    def required_request_fields(self) -> tuple[str, ...]:
        return self.identifying_fields + self.legal_basis_fields


@dataclass(frozen=True, slots=True)
class Policy:
    """The agreements of a policy file. An agreement id may have several versions, each in force over its own
    period; ``agreements`` holds each id's latest version, :meth:`agreement_at` the one in force at a time."""

    path: str
    version: str  # sha256 of the file's bytes, first 12 hex digits
    agreements: Mapping[str, Agreement]  # id -> its latest version
    earlier: Mapping[str, tuple[Agreement, ...]] = field(default_factory=dict)  # id -> other versions, oldest first

    def agreement_at(self, agreement_id: str, at_ms: int) -> Agreement | None:
        """The version of ``agreement_id`` in force at ``at_ms``: the latest that had started by then (so a
        time after its end, or in a gap, is judged by the version that ended, and is outside its period), or
        the first version for a time before any began."""
        agreement = self.agreements.get(agreement_id)
        if agreement is None or at_ms >= agreement.effective_from_ms:
            return agreement  # the common case: one version, or the latest
        earlier = self.earlier.get(agreement_id, ())
        for version in reversed(earlier):
            if at_ms >= version.effective_from_ms:
                return version
        return earlier[0] if earlier else agreement

    def all_versions(self) -> list[Agreement]:
        """Every version of every agreement."""
        return [v for versions in self.earlier.values() for v in versions] + list(self.agreements.values())

    def version_label(self, agreement_id: str, at_ms: int) -> str:
        """What a finding names as the policy it applied: the agreement's version label in force at ``at_ms``,
        or the policy file's version when the agreement has no label."""
        agreement = self.agreement_at(agreement_id, at_ms)
        return agreement.version if agreement is not None and agreement.version else self.version

    def __reduce__(self) -> tuple[Any, ...]:
        # A policy is sent to a replay's reading process (monitor.replay.read_ahead); a mappingproxy cannot be pickled.
        return _frozen_policy, (self.path, self.version, dict(self.agreements), dict(self.earlier))


def _frozen_policy(
    path: str, version: str, agreements: dict[str, Agreement], earlier: dict[str, tuple[Agreement, ...]] | None = None
) -> Policy:
    return Policy(path, version, MappingProxyType(agreements), MappingProxyType(earlier or {}))


_AGREEMENT_KEYS = frozenset(
    {
        "id", "requesters", "disclosers", "effective_from", "effective_until", "permitted_fields",
        "required_request_fields", "required_match", "response_sla", "join_window", "orphan_grace",
        "disposal_deadline", "max_disclosures_per_day", "max_batch_size", "authorized_signatories",
        "placeholder_values", "address_forms", "restriction", "rate_spike", "ratio_drift", "version", "after_gap",
    }
)  # fmt: skip
_RESTRICTION_KEYS = frozenset({"fields", "from", "until", "requesters", "reason"})
_MATCH_KEYS = frozenset({"status", "min_score", "on"})
_RATE_KEYS = frozenset({"window", "hop", "min_count", "factor", "max_p_value", "warmup_windows", "ewma_alpha"})
_RATIO_KEYS = frozenset({"window", "shift", "threshold", "warmup_responses", "ewma_alpha"})


class _Reader:
    """Validates one table, raising PolicyError that points at the key's line."""

    def __init__(self, path: str, lines: list[str], table: Mapping[str, Any], where: str, start_line: int) -> None:
        self.path, self.lines, self.table, self.where, self.start_line = path, lines, table, where, start_line

    def fail(self, key: str, reason: str) -> PolicyError:
        return PolicyError(self.path, f"{self._line_of(key)}{self.where}.{key}", reason)

    def _line_of(self, key: str) -> str:
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
        for number in range(self.start_line, len(self.lines)):
            if pattern.match(self.lines[number]):
                return f"line {number + 1}: "
        return f"line {self.start_line + 1}: " if self.start_line else ""

    def check_keys(self, allowed: frozenset[str]) -> None:
        for key in self.table:
            if key not in allowed:
                raise self.fail(key, f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def text(self, key: str, required: bool = False) -> str | None:
        value = self.table.get(key)
        if value is None:
            if required:
                raise self.fail(key, "required key is missing")
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, "must be a non-empty string")
        return value

    def text_list(self, key: str, required: bool = False, empty_ok: bool = True) -> tuple[str, ...] | None:
        value = self.table.get(key)
        if value is None:
            if required:
                raise self.fail(key, "required key is missing")
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(key, "must be a list of non-empty strings")
        if not value and not empty_ok:
            reason = "must name at least one agency"
            raise self.fail(key, reason if required else reason + " (leave the key out to mean every one)")
        return tuple(value)

    def moment_ms(self, key: str, required: bool = False, end_of_day: bool = False) -> int | None:
        value = self.table.get(key)
        if value is None:
            if required:
                raise self.fail(key, "required key is missing")
            return None
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                raise self.fail(key, "a date-time needs an offset (e.g. 2025-04-07T00:00:00Z)")
            return to_ms(value)
        if isinstance(value, dt.date):
            return date_start_ms(value) + (MS_PER_DAY if end_of_day else 0)
        raise self.fail(key, "must be a TOML date (2025-04-07) or offset date-time")

    def duration_ms(self, key: str, default: str | None = None) -> int | None:
        value = self.table.get(key, default)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(key, "must be a duration string such as '72h' or '14d'")
        try:
            ms = parse_duration_ms(value)
        except ValueError as exc:
            raise self.fail(key, str(exc)) from exc
        if ms <= 0:
            raise self.fail(key, "must be positive")
        return ms

    def positive_number(self, key: str, maximum: float | None = None) -> float | None:
        value = self.table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise self.fail(key, "must be a positive number")
        if maximum is not None and value > maximum:
            raise self.fail(key, f"must be at most {maximum}")
        return float(value)

    def positive_int(self, key: str) -> int | None:
        value = self.table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.fail(key, "must be a positive integer")
        return value


def _read_match(outer: _Reader) -> RequiredMatch | None:
    value = outer.table.get("required_match")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise outer.fail("required_match", 'must be a table such as { status = "matched", min_score = 0.9 }')
    inner = _Reader(outer.path, outer.lines, value, outer.where + ".required_match", outer.start_line)
    inner.check_keys(_MATCH_KEYS)
    status = inner.text("status") or "matched"
    if status not in MATCH_STATUSES:
        raise inner.fail("status", f"must be one of {', '.join(MATCH_STATUSES)}")
    score = value.get("min_score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float)) or not 0 <= score <= 1):
        raise inner.fail("min_score", "must be a number between 0 and 1")
    on = inner.text_list("on") or ()
    unknown = set(on) - MATCH_KEYS
    if unknown:
        raise inner.fail("on", f"unknown match keys {sorted(unknown)} (known: {', '.join(sorted(MATCH_KEYS))})")
    return RequiredMatch(status, None if score is None else float(score), frozenset(on))


def _subtable(outer: _Reader, key: str, allowed: frozenset[str]) -> _Reader | None:
    value = outer.table.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise outer.fail(key, 'must be a table such as { window = "1h" } ({} for the defaults; false turns a rule off)')
    inner = _Reader(outer.path, outer.lines, value, f"{outer.where}.{key}", outer.start_line)
    inner.check_keys(allowed)
    return inner


def _switched(outer: _Reader, key: str, allowed: frozenset[str]) -> _Reader | None:
    """An anomaly rule's table: on with its defaults unless the agreement says ``key = false``."""
    value = outer.table.get(key, True)
    if value is False:
        return None
    if value is True:
        return _Reader(outer.path, outer.lines, {}, f"{outer.where}.{key}", outer.start_line)
    return _subtable(outer, key, allowed)


def _read_rate_spike(outer: _Reader) -> RateSpikeConfig | None:
    reader = _switched(outer, "rate_spike", _RATE_KEYS)
    if reader is None:
        return None
    default = RateSpikeConfig()
    window = reader.duration_ms("window") or default.window_ms
    hop = reader.duration_ms("hop") or min(default.hop_ms, window)
    if window % hop:
        raise reader.fail("hop", "the window must be a whole multiple of the hop")
    alpha = reader.positive_number("ewma_alpha", maximum=1.0)
    p_value = reader.positive_number("max_p_value", maximum=1.0)
    return RateSpikeConfig(
        window_ms=window,
        hop_ms=hop,
        min_count=reader.positive_int("min_count") or default.min_count,
        factor=reader.positive_number("factor") or default.factor,
        max_p_value=p_value or default.max_p_value,
        warmup_windows=reader.positive_int("warmup_windows") or default.warmup_windows,
        ewma_alpha=alpha or default.ewma_alpha,
    )


def _read_ratio_drift(outer: _Reader) -> RatioDriftConfig | None:
    reader = _switched(outer, "ratio_drift", _RATIO_KEYS)
    if reader is None:
        return None
    default = RatioDriftConfig()
    shift = reader.positive_number("shift") or default.shift
    if shift <= 1.0:
        raise reader.fail("shift", "must be above 1 (the multiple of the baseline ratio to detect)")
    return RatioDriftConfig(
        window_ms=reader.duration_ms("window") or default.window_ms,
        shift=shift,
        threshold=reader.positive_number("threshold") or default.threshold,
        warmup_responses=reader.positive_int("warmup_responses") or default.warmup_responses,
        ewma_alpha=reader.positive_number("ewma_alpha", maximum=1.0) or default.ewma_alpha,
    )


def _read_restriction(outer: _Reader, index: int, value: Any) -> Restriction:
    where = f"{outer.where}.restriction[{index}]"
    if not isinstance(value, dict):
        raise outer.fail("restriction", "must be an array of tables ([[agreement.restriction]])")
    start = _nth_header(outer.lines, "[[agreement.restriction]]", index, outer.start_line)
    reader = _Reader(outer.path, outer.lines, value, where, start)
    reader.check_keys(_RESTRICTION_KEYS)
    fields = reader.text_list("fields", required=True) or ()
    from_ms = reader.moment_ms("from", required=True)
    until_ms = reader.moment_ms("until", end_of_day=True)
    assert from_ms is not None
    if until_ms is not None and until_ms <= from_ms:
        raise reader.fail("until", "must be after 'from'")
    requesters = reader.text_list("requesters", empty_ok=False)
    reason = reader.text("reason") or "restriction in force"
    return Restriction(
        frozenset(fields), from_ms, until_ms, None if requesters is None else frozenset(requesters), reason
    )


def _nth_header(lines: list[str], header: str, index: int, start: int) -> int:
    seen = -1
    for number in range(start, len(lines)):
        if lines[number].strip().startswith(header):
            seen += 1
            if seen == index:
                return number
    return start


def _read_agreement(path: str, lines: list[str], index: int, table: Any) -> Agreement:
    start = _nth_header(lines, "[[agreement]]", index, 0)
    reader = _Reader(path, lines, table if isinstance(table, dict) else {}, f"agreement[{index}]", start)
    if not isinstance(table, dict):
        raise reader.fail("agreement", "must be an array of tables ([[agreement]])")
    reader.check_keys(_AGREEMENT_KEYS)
    agreement_id = reader.text("id", required=True)
    assert agreement_id is not None
    if agreement_id == CANARY_AGREEMENT:
        raise reader.fail("id", f"{CANARY_AGREEMENT!r} is reserved for the canary's probes (dismon canary)")
    reader.where = f"agreement[{index}] ({agreement_id})"
    requesters = reader.text_list("requesters", required=True, empty_ok=False) or ()
    disclosers = reader.text_list("disclosers", required=True, empty_ok=False) or ()
    required = reader.text_list("required_request_fields") or ()
    unknown = [f for f in required if f not in REQUEST_FIELDS]
    if unknown:
        raise reader.fail("required_request_fields", f"unknown request field(s) {unknown}")
    from_ms = reader.moment_ms("effective_from", required=True)
    until_ms = reader.moment_ms("effective_until", end_of_day=True)
    assert from_ms is not None
    if until_ms is not None and until_ms <= from_ms:
        raise reader.fail("effective_until", "must be after effective_from")
    restrictions_raw = table.get("restriction", [])
    if not isinstance(restrictions_raw, list):
        raise reader.fail("restriction", "must be an array of tables ([[agreement.restriction]])")
    signatories = reader.text_list("authorized_signatories")
    join_window_ms = reader.duration_ms("join_window", DEFAULT_JOIN_WINDOW)
    orphan_grace_ms = reader.duration_ms("orphan_grace", DEFAULT_ORPHAN_GRACE)
    assert join_window_ms is not None and orphan_grace_ms is not None
    if orphan_grace_ms >= join_window_ms:
        raise reader.fail("orphan_grace", "must be shorter than join_window (state is dropped after join_window)")
    return Agreement(
        id=agreement_id,
        requesters=frozenset(requesters),
        disclosers=frozenset(disclosers),
        effective_from_ms=from_ms,
        effective_until_ms=until_ms,
        permitted_fields=frozenset(reader.text_list("permitted_fields") or ()),
        identifying_fields=tuple(f for f in required if not f.startswith("legal_basis.")),
        legal_basis_fields=tuple(f for f in required if f.startswith("legal_basis.")),
        required_match=_read_match(reader),
        response_sla_ms=reader.duration_ms("response_sla"),
        join_window_ms=join_window_ms,
        orphan_grace_ms=orphan_grace_ms,
        disposal_deadline_ms=reader.duration_ms("disposal_deadline"),
        max_disclosures_per_day=reader.positive_int("max_disclosures_per_day"),
        max_batch_size=reader.positive_int("max_batch_size"),
        rate_spike=_read_rate_spike(reader),
        ratio_drift=_read_ratio_drift(reader),
        authorized_signatories=None if signatories is None else frozenset(signatories),
        placeholder_values=frozenset(normalize(v) for v in reader.text_list("placeholder_values") or ()),
        address_forms=_read_address_forms(reader),
        restrictions=tuple(_read_restriction(reader, i, r) for i, r in enumerate(restrictions_raw)),
        version=reader.text("version") or "",
        after_gap=_read_flag(reader, "after_gap"),
    )


def _read_flag(reader: _Reader, key: str) -> bool:
    value = reader.table.get(key, False)
    if not isinstance(value, bool):
        raise reader.fail(key, "must be true or false")
    return value


def _read_address_forms(reader: _Reader) -> frozenset[str]:
    forms = reader.text_list("address_forms")
    if forms is None:
        return frozenset(FORMS)
    if not forms:
        raise reader.fail("address_forms", "must name at least one form (leave the key out to accept every one)")
    unknown = sorted(set(forms) - set(FORMS))
    if unknown:
        raise reader.fail("address_forms", f"unknown form(s) {unknown}; known: {list(FORMS)}")
    return frozenset(forms)


def parse_policy(text: str, path: str = "<policy>") -> Policy:
    """Validate policy TOML text; raises PolicyError naming path, line/key and reason."""
    try:
        encoded = text.encode()  # for the version hash; a file read as UTF-8 always encodes
    except UnicodeEncodeError as exc:
        raise PolicyError(path, f"character {exc.start}", "not valid UTF-8 text (a lone surrogate)") from exc
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(path, "syntax", str(exc)) from exc
    lines = text.splitlines()
    unknown_top = sorted(set(document) - {"agreement"})
    if unknown_top:
        raise PolicyError(path, f"key {unknown_top[0]!r}", "unknown top-level key (expected [[agreement]] tables)")
    tables = document.get("agreement")
    if not isinstance(tables, list) or not tables:
        raise PolicyError(path, "agreement", "the file defines no [[agreement]]")
    by_id: dict[str, list[tuple[int, Agreement]]] = {}
    for index, table in enumerate(tables):
        agreement = _read_agreement(path, lines, index, table)
        by_id.setdefault(agreement.id, []).append((index, agreement))
    agreements: dict[str, Agreement] = {}
    earlier: dict[str, tuple[Agreement, ...]] = {}
    for agreement_id, versions in by_id.items():
        ordered = _check_versions(path, lines, agreement_id, versions)
        agreements[agreement_id] = ordered[-1]
        if len(ordered) > 1:
            earlier[agreement_id] = tuple(ordered[:-1])
    version = hashlib.sha256(encoded).hexdigest()[:12]
    return _frozen_policy(path, version, agreements, earlier)


def _check_versions(
    path: str, lines: list[str], agreement_id: str, versions: list[tuple[int, Agreement]]
) -> list[Agreement]:
    """The versions of one agreement id in time order; each must have its own label, and their periods must
    neither overlap nor leave a gap, unless the later one says ``after_gap = true``."""

    def fail(index: int, key: str, reason: str) -> PolicyError:
        start = _nth_header(lines, "[[agreement]]", index, 0)
        return _Reader(path, lines, {}, f"agreement[{index}] ({agreement_id})", start).fail(key, reason)

    if len(versions) == 1:
        return [versions[0][1]]
    labels: dict[str, int] = {}
    for index, agreement in versions:
        if not agreement.version:
            raise fail(index, "id", f"duplicate agreement id {agreement_id!r}: give each version a 'version' label")
        if agreement.version in labels:
            raise fail(index, "version", f"version {agreement.version!r} of {agreement_id!r} is defined twice")
        labels[agreement.version] = index
    ordered = sorted(versions, key=lambda item: item[1].effective_from_ms)
    for (_, before), (index, after) in itertools.pairwise(ordered):
        end = before.effective_until_ms
        if end is None or end > after.effective_from_ms:
            raise fail(index, "effective_from", f"version {after.version!r} overlaps version {before.version!r}, "
                       "which is still in force then (end it with effective_until)")  # fmt: skip
        if end < after.effective_from_ms and not after.after_gap:
            raise fail(index, "effective_from", f"no version of {agreement_id!r} is in force between the end of "
                       f"{before.version!r} and version {after.version!r}: set after_gap = true if the agreement "
                       "lapsed on purpose")  # fmt: skip
    return [agreement for _, agreement in ordered]
