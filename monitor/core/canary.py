"""The canary's probe: a request and a response that discloses under the reserved agreement ``dismon-canary``.

No policy may define that agreement (the loader refuses it), so every probe is a violation: the request is
``unauthorized_party`` at once, and the response is ``unauthorized_party`` again once the join has paired it
with its request. A probe whose two findings come back on the alerts topic has gone through decoding, the
join and the rules of a running pipeline. Both events are synthetic: no person's data.
"""

from __future__ import annotations

import orjson

from monitor.core.timeutil import format_ms

CANARY_AGREEMENT = "dismon-canary"
CANARY_AGENCY = "DISMON-CANARY"
#: Findings a probe must give: the request's, and the joined response's.
CANARY_FINDINGS = 2


def probe(request_id: str, at_ms: int) -> tuple[bytes, bytes]:
    """The request and the response of one probe (JSON), both at ``at_ms``."""
    at = format_ms(at_ms)
    request = {
        "type": "request",
        "request_id": request_id,
        "agreement_id": CANARY_AGREEMENT,
        "requester": {"agency": CANARY_AGENCY, "unit": "canary"},
        "submitted_at": at,
        "subject": {"name": {"first": "Canary", "last": "Probe"}},
        "legal_basis": {"statute": "canary probe"},
    }
    response = {
        "type": "response",
        "request_id": request_id,
        "agreement_id": CANARY_AGREEMENT,
        "responder": {"agency": CANARY_AGENCY},
        "responded_at": at,
        "match": {"status": "matched"},
        "disclosed": {"address": {"street": "1 Canary Way", "city": "Nowhere", "state": "NA", "zip": "00000"}},
    }
    return orjson.dumps(request), orjson.dumps(response)
