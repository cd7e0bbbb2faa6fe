"""The rule registry: every rule id of SPEC §4 that the core implements, mapped to its class.

Adding a rule means one new module here and one line in this registry.
"""

from __future__ import annotations

from collections.abc import Mapping

from monitor.rules.base import DisclosureRule, RequestRule, RuleClass, WindowedRule
from monitor.rules.daily_cap_exceeded import DailyCapExceeded
from monitor.rules.disclosure_rate_spike import DisclosureRateSpike
from monitor.rules.disclosure_ratio_drift import DisclosureRatioDrift
from monitor.rules.disposal_overdue import DisposalOverdue
from monitor.rules.duplicate_disclosure import DuplicateDisclosure
from monitor.rules.incomplete_request_disclosure import IncompleteRequestDisclosure
from monitor.rules.missing_legal_basis_disclosure import MissingLegalBasisDisclosure
from monitor.rules.orphan_disclosure import OrphanDisclosure
from monitor.rules.outside_agreement_period import OutsideAgreementPeriod
from monitor.rules.oversized_batch import OversizedBatch
from monitor.rules.response_sla_breach import ResponseSlaBreach
from monitor.rules.restricted_disclosure import RestrictedDisclosure
from monitor.rules.subject_mismatch import SubjectMismatch
from monitor.rules.unauthorized_party import UnauthorizedParty
from monitor.rules.unpermitted_field import UnpermittedField
from monitor.rules.weak_match_disclosure import WeakMatchDisclosure

REQUEST_RULES: tuple[RequestRule, ...] = (UnauthorizedParty(),)
DISCLOSURE_RULES: tuple[DisclosureRule, ...] = (
    UnauthorizedParty(),
    OutsideAgreementPeriod(),
    RestrictedDisclosure(),
    IncompleteRequestDisclosure(),
    MissingLegalBasisDisclosure(),
    WeakMatchDisclosure(),
    UnpermittedField(),
    SubjectMismatch(),
)
ORPHAN = OrphanDisclosure()
DUPLICATE = DuplicateDisclosure()
SLA = ResponseSlaBreach()
DISPOSAL = DisposalOverdue()

#: Stateful aggregate rules, instantiated per detector; the flag says whether an agreement turns each on.
WINDOWED_RULES: tuple[tuple[type[WindowedRule], str], ...] = (
    (DailyCapExceeded, "max_disclosures_per_day"),
    (OversizedBatch, "max_batch_size"),
    (DisclosureRateSpike, "rate_spike"),
    (DisclosureRatioDrift, "ratio_drift"),
)

_ALL: tuple[RuleClass, ...] = (
    *REQUEST_RULES,
    *DISCLOSURE_RULES,
    ORPHAN,
    DUPLICATE,
    SLA,
    DISPOSAL,
    *(cls() for cls, _ in WINDOWED_RULES),
)
#: Every rule id the core implements, mapped to its rule object.
RULES: Mapping[str, RuleClass] = {rule.rule_id: rule for rule in _ALL}
