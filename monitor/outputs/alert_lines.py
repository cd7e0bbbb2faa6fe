"""Alert lines read back (``dismon report``, ``dismon incident``): which findings are about a disclosure.

Kept apart from the HTML report so that commands which only count alerts do not load the plotting library.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from monitor.core.canary import CANARY_AGREEMENT
from monitor.core.rules import DISCLOSURE_RULES, DUPLICATE, ORPHAN, WINDOWED_RULES

#: Findings about what a response disclosed; a critical one makes the disclosure improper (as the join marks it).
DISCLOSURE_RULE_IDS = frozenset(rule.rule_id for rule in DISCLOSURE_RULES) | {ORPHAN.rule_id, DUPLICATE.rule_id}
#: unauthorized_party's findings about the request alone, not about what was disclosed.
REQUEST_PROBLEMS = frozenset(("requester_not_party", "signatory_not_authorized", "signatory_missing"))
WINDOWED = tuple(cls.rule_id for cls, _ in WINDOWED_RULES)


def about_a_disclosure(alert: Mapping[str, Any]) -> bool:
    """Whether a finding is about what a response disclosed (not about a request alone, nor a window)."""
    if alert["rule"] not in DISCLOSURE_RULE_IDS:
        return False
    return (alert.get("details") or {}).get("problem") not in REQUEST_PROBLEMS


def load_alerts(lines: Iterable[bytes]) -> list[dict[str, Any]]:
    """Alert lines (JSON) without the canary's probes."""
    alerts = (orjson.loads(line) for line in lines if line.strip())
    return [a for a in alerts if a.get("agreement_id") != CANARY_AGREEMENT]
