"""A join taken over from a durable store re-arms the same timers whether its entries are restored one by one
or all at once (``Joiner.restore_all``, what a restart uses)."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.core.digests import Reducer
from monitor.core.events import event_time_ms
from monitor.core.findings import SubjectHasher
from monitor.core.join import JoinEntry
from monitor.core.joiner import Joiner
from monitor.core.policy import Policy, parse_policy
from tests.conftest import POLICY_TOML, TEST_KEY, disposal, request, response

POLICY: Policy = parse_policy(POLICY_TOML, "p.toml")
HOUR_MS = 3_600_000


def _copy(store: dict[str, JoinEntry]) -> dict[str, JoinEntry]:
    return msgspec.msgpack.decode(msgspec.msgpack.encode(store), type=dict[str, JoinEntry])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["request", "response", "disposal"]), st.integers(0, 9), st.integers(0, 400)),
                max_size=40))  # fmt: skip
def test_restore_all_re_arms_what_restore_does_entry_by_entry(events: list[tuple[str, int, int]]) -> None:
    joiner, reducer = Joiner(POLICY), Reducer(POLICY, SubjectHasher(TEST_KEY))
    make = {"request": request, "response": response, "disposal": disposal}
    stamp = {"request": "submitted_at", "response": "responded_at", "disposal": "disposed_at"}
    for kind, number, hours in events:
        at = f"2025-06-{1 + hours // 24:02d}T{hours % 24:02d}:00:00Z"
        event = make[kind](request_id=f"r{number}", **{stamp[kind]: at})
        joiner.apply(reducer.reduce(event, event_time_ms(event)), event_time_ms(event))
    assert len(joiner.store) == len({number for _kind, number, _hours in events})  # every id held, none expired
    one_by_one, all_at_once = Joiner(POLICY, _copy(dict(joiner.store))), Joiner(POLICY, _copy(dict(joiner.store)))
    for request_id, entry in list(one_by_one.store.items()):
        one_by_one.restore(request_id, entry)
    all_at_once.restore_all(all_at_once.store)
    assert {k: e.scheduled_ms for k, e in one_by_one.store.items()} == {
        k: e.scheduled_ms for k, e in all_at_once.store.items()
    }
    assert list(one_by_one.timers.pop_due(10**15)) == list(all_at_once.timers.pop_due(10**15))
