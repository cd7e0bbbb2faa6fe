"""A replay's input read in a second process, so that two cores share the work.

One process decompresses, validates and orders the events (:func:`monitor.sources.merged_events`,
dead letters included); the replay's own process decodes the accepted lines again and runs the
detector. Decoding twice costs less than it saves: the reading side is about a third of a replay's
work, and the lines cross the pipe as the bytes they were (pickling decoded events would cost more
than decoding them). The detector sees exactly the sequence of events an in-process read would give
it, and ``on_invalid`` gets exactly the same dead letters in the same order, so findings are the same.

The pipe holds only a few batches: a reader that runs ahead blocks until the replay catches up.
Errors in the reading process (a file that cannot be read, a corrupt gzip stream) are raised in the
replay's process as they would be in process; if the reading process dies, the replay stops with an
:class:`~monitor.errors.InputError` naming its exit code.
"""

from __future__ import annotations

import array
import multiprocessing
import signal
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection

from monitor.errors import DismonError, InputError
from monitor.events import DEFAULT_MAX_EVENT_BYTES, Event, decode_accepted
from monitor.sources import ByteCounter, DeadLetter, merged_events

#: Events per message: large enough that pickling and the pipe cost little per event.
BATCH_EVENTS = 4096

# Each message is a batch (event times as int64 bytes, raw lines, dead letters met before the batch's
# last event was read, bytes consumed so far), None at the end, or the exception that stopped reading.
_Batch = tuple[bytes, list[bytes], list[DeadLetter], int]


def read_ahead_events(
    paths: Iterable[str],
    on_invalid: Callable[[DeadLetter], None],
    max_disorder_ms: int,
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    counter: ByteCounter | None = None,
    not_after_ms: int | None = None,
) -> Iterator[tuple[int, int, Event]]:
    """:func:`monitor.sources.merged_events` with the reading done by a second process.

    Yields ``(event_ms, position, event)``; ``position`` counts the events yielded. Files only:
    a spawned process cannot read this process's stdin."""
    paths = list(paths)
    if "-" in paths:
        raise ValueError("stdin cannot be read ahead in another process")
    # spawn, not fork: the child starts clean, without copies of this process's threads or locks.
    context = multiprocessing.get_context("spawn")
    receiving, sending = context.Pipe(duplex=False)
    process = context.Process(
        target=_read, args=(sending, paths, max_disorder_ms, max_event_bytes, not_after_ms),
        name="dismon-read", daemon=True,
    )  # fmt: skip
    process.start()
    sending.close()  # only the child writes: its exit then reads as end of file here
    position = 0
    try:
        while True:
            try:
                message: _Batch | BaseException | None = receiving.recv()
            except EOFError:
                process.join(5)
                raise InputError(f"the reading process ended unexpectedly (exit code {process.exitcode})") from None
            if message is None:
                return
            if isinstance(message, BaseException):
                raise message
            times, lines, dead, consumed = message
            for letter in dead:
                on_invalid(letter)
            if counter is not None:
                counter.elsewhere = consumed
            for event_ms, line in zip(array.array("q", times), lines):
                yield event_ms, position, decode_accepted(line)
                position += 1
    finally:
        receiving.close()
        if process.is_alive():
            process.terminate()  # the replay stopped early (an error, ^C, a closed generator)
        process.join()


def _read(
    out: Connection, paths: list[str], max_disorder_ms: int, max_event_bytes: int, not_after_ms: int | None
) -> None:
    """The reading process: batches of accepted lines down the pipe, then None (or the error)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C is the replay's to handle; it stops this process
    counter = ByteCounter()
    times, lines, dead = array.array("q"), list[bytes](), list[DeadLetter]()
    try:
        for event_ms, _seq, line in merged_events(paths, dead.append, max_disorder_ms, max_event_bytes, counter,
                                                  keep="raw", not_after_ms=not_after_ms):
            times.append(event_ms)
            lines.append(line)
            if len(lines) >= BATCH_EVENTS:
                out.send((times.tobytes(), lines, dead, counter.consumed()))
                times, lines = array.array("q"), []
                dead.clear()  # in place: merged_events holds its append (send has pickled the batch)
        out.send((times.tobytes(), lines, dead, counter.consumed()))
        out.send(None)
    except (BrokenPipeError, ConnectionResetError):
        return  # the replay stopped reading
    except DismonError as exc:
        _send_quietly(out, exc)
    except Exception as exc:  # a bug: reported in the replay's process rather than lost with this one
        _send_quietly(out, InputError(f"reading failed: {exc!r}"))
    finally:
        out.close()


def _send_quietly(out: Connection, error: DismonError) -> None:
    try:
        out.send(error)
    except (BrokenPipeError, ConnectionResetError):
        pass
