"""The rule registry: every rule id of SPEC §4 that the core implements, mapped to its class.

Adding a rule means one new module here and one line in this registry.
"""

from __future__ import annotations

from collections.abc import Mapping

from monitor.core.rules.base import DisclosureRule, RequestRule, RuleClass, WindowedRule
from monitor.core.rules.daily_cap_exceeded import DailyCapExceeded
from monitor.core.rules.disclosure_rate_spike import DisclosureRateSpike
from monitor.core.rules.disclosure_ratio_drift import DisclosureRatioDrift
from monitor.core.rules.disposal_overdue import DisposalOverdue
from monitor.core.rules.duplicate_disclosure import DuplicateDisclosure
from monitor.core.rules.incomplete_request_disclosure import IncompleteRequestDisclosure
from monitor.core.rules.missing_legal_basis_disclosure import MissingLegalBasisDisclosure
from monitor.core.rules.orphan_disclosure import OrphanDisclosure
from monitor.core.rules.outside_agreement_period import OutsideAgreementPeriod
from monitor.core.rules.oversized_batch import OversizedBatch
from monitor.core.rules.response_sla_breach import ResponseSlaBreach
from monitor.core.rules.restricted_disclosure import RestrictedDisclosure
from monitor.core.rules.subject_mismatch import SubjectMismatch
from monitor.core.rules.unauthorized_party import UnauthorizedParty
from monitor.core.rules.unpermitted_field import UnpermittedField
from monitor.core.rules.weak_match_disclosure import WeakMatchDisclosure

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
