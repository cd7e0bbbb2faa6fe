"""What the join learns for the windowed rules: *window facts*, one small typed record each.

The join (:class:`~monitor.core.joiner.Joiner`) makes them; the window stage
(:mod:`monitor.core.windows.stage`) counts them. In a replay they go straight from one to the other; in the
live worker they cross the ``<group>-window-facts`` topic in :class:`FactsRecord` s, so their encoding is a
file format: tagged MessagePack arrays, ``["request", agreement_id, at_ms, batch_id, agency, unit]`` and so
on, inside a record that names its version.
"""

from __future__ import annotations

import msgspec


class RequestFact(msgspec.Struct, frozen=True, array_like=True, gc=False, tag="request"):
    """A request seen for the first time (oversized batches, the agencies' volumes)."""

    agreement_id: str
    at_ms: int
    batch_id: str | None
    agency: str
    unit: str | None


class ResponseFact(msgspec.Struct, frozen=True, array_like=True, gc=False, tag="response"):
    """A response, disclosing or not (the disclosure ratio)."""

    agreement_id: str
    at_ms: int
    disclosed: bool


class DisclosureFact(msgspec.Struct, frozen=True, array_like=True, gc=False, tag="disclosure"):
    """A new distinct disclosure (daily caps)."""

    agreement_id: str
    at_ms: int


class JoinedFact(msgspec.Struct, frozen=True, array_like=True, gc=False, tag="joined"):
    """A disclosure joined to its request, with the request's unit (rate spikes per unit).

    Made by whichever of the two arrives second, so ``paired`` gives the position of the other one, as the
    caller numbered the join's input (-1 if it numbered none): the live worker's relay uses both to count a
    joined disclosure once, whatever order the two are handled in again after a crash."""

    agreement_id: str
    at_ms: int
    unit: str | None
    paired: int = -1


Fact = RequestFact | ResponseFact | DisclosureFact | JoinedFact
FACT_TYPES: tuple[type[Fact], ...] = (RequestFact, ResponseFact, DisclosureFact, JoinedFact)
