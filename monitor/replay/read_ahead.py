"""A replay's input read in a second process, so that two cores share the work.

The reading process decompresses, validates and orders the events
(:func:`monitor.replay.sources.merged_events`, dead letters included). Reducing each event to its digest
(:mod:`monitor.core.digests`: the required-field checks, the keyed hashes, the request rules) can happen on
either side. The reading process reduces a share of the events as it decodes them and sends the
rest as the lines they were, which the replay's process decodes and reduces. The share follows the
load: after a send that had to wait (the replay's process had batches queued already) it grows,
after one that did not it shrinks. Either fixed split leaves a core idle for much of the run:
reading is about a third of the work, reading plus reducing about two thirds.

Reducing is deterministic for a given policy and key, so the detector gets exactly the digests it
would have made itself, in the same order, and ``on_invalid`` gets the same dead letters in the same
order: the findings are the same whatever the split.

The pipe and the replay's receiving queue hold only a few batches: a reader that runs ahead blocks
until the replay catches up.
Errors in the reading process (a file that cannot be read, a corrupt gzip stream) are raised in the
replay's process as they would be in process; if the reading process dies, the replay stops with an
:class:`~monitor.errors.InputError` naming its exit code.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import multiprocessing
import pickle
import signal
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from multiprocessing.connection import Connection
from typing import Any, Literal

import msgspec

from monitor.core.digests import Digest, PairReducer, Reducer
from monitor.core.events import Event, decode_accepted
from monitor.core.findings import SubjectHasher
from monitor.core.policy import Policy
from monitor.errors import DismonError, InputError
from monitor.replay.sources import ByteCounter, DeadLetter, ReadOptions, merged_events, prefetched

#: Events per message: large enough that the pipe costs little per event.
BATCH_EVENTS = 2048
#: Batches the replay's process holds ready (its receiving thread's queue).
_DEPTH = 4
#: The pipe's buffer (see _widen).
_PIPE_BYTES = 1 << 20
#: With that queue and pipe full, a send blocks: blocking this long means the replay's process is behind.
_WAITED_S = 0.002
#: How much the share of events reduced in the reading process moves after each batch.
_STEP = 0.2

#: Where events are reduced: shared by load, or always on one side (for tests and benchmarks).
Split = Literal["balanced", "reader", "replay"]

# Each message is a batch (event times as int64 bytes; one MessagePack array of digests and of accepted
# lines not reduced yet; dead letters met while the batch was read; input bytes consumed so far), None at
# the end, or the error that stopped the reading.
_Batch = tuple[bytes, bytes, list[DeadLetter], int]
encode_batch = msgspec.msgpack.Encoder().encode
decode_batch = msgspec.msgpack.Decoder(list[bytes | Digest]).decode
decode_digests = msgspec.msgpack.Decoder(list[Digest]).decode
#: A batch of ``dismon policy diff``'s reading: the digests under the first policy and under the second, each
#: encoded on its own (so that either can be handed on as it is).
_decode_two = msgspec.msgpack.Decoder(tuple[bytes, bytes]).decode


def read_ahead_digests(
    paths: Iterable[str],
    on_invalid: Callable[[DeadLetter], None],
    options: ReadOptions,
    reducer: Reducer,
    counter: ByteCounter | None = None,
    split: Split = "balanced",
) -> Generator[tuple[int, int, Digest], None, None]:
    """The events of :func:`monitor.replay.sources.merged_events`, read by a second process and reduced by
    ``reducer`` (or by one like it there): ``(event_ms, position, digest)``, ``position`` counting them.

    Files only: a spawned process cannot read this process's stdin."""
    process, receiving = _start(paths, options, reducer.policy, reducer.hasher, split, None)
    reduce = reducer.reduce
    position = 0
    with contextlib.closing(_batches(process, receiving, on_invalid, counter)) as batches:  # closed with this one
        for times, payload in batches:
            for event_ms, item in zip(array.array("q", times), decode_batch(payload), strict=False):
                yield event_ms, position, reduce(decode_accepted(item), event_ms) if isinstance(item, bytes) else item
                position += 1


def read_ahead_two(
    paths: Iterable[str],
    on_invalid: Callable[[DeadLetter], None],
    options: ReadOptions,
    first: Reducer,
    second: Reducer,
    counter: ByteCounter | None = None,
) -> Generator[tuple[bytes, bytes, bytes], None, None]:
    """The events of :func:`monitor.replay.sources.merged_events` decoded once in a second process and reduced
    there under two policies (``dismon policy diff``), by batch: ``(event times, first's digests, second's
    digests)``, the times as int64 bytes and each list of digests MessagePack (:data:`decode_digests`)."""
    process, receiving = _start(paths, options, first.policy, first.hasher, "reader", second.policy)
    with contextlib.closing(_batches(process, receiving, on_invalid, counter)) as batches:
        for times, payload in batches:
            yield (times, *_decode_two(payload))


def _batches(
    process: Any,
    receiving: Connection,
    on_invalid: Callable[[DeadLetter], None],
    counter: ByteCounter | None,
) -> Generator[tuple[bytes, bytes], None, None]:
    """The reading process's batches as (event times, payload), its dead letters handed to ``on_invalid`` on
    the way; the process stopped and the pipe closed at the end, or when the caller stops early."""
    # A thread takes batches off the pipe as they come, up to _DEPTH ahead, so the reading process never
    # waits while this one is busy with a batch; a send that blocks then means this process is behind.
    messages = prefetched(_received(receiving), _DEPTH)
    try:
        for data in messages:
            message: _Batch | BaseException | None = pickle.loads(data)
            if message is None:
                process.join(5)  # it ends by itself after its last message
                return
            if isinstance(message, BaseException):
                raise message
            times, payload, dead, consumed = message
            for letter in dead:
                on_invalid(letter)
            if counter is not None:
                counter.elsewhere = consumed
            yield times, payload
    except EOFError:
        process.join(5)
        raise InputError(f"the reading process ended unexpectedly (exit code {process.exitcode})") from None
    finally:
        if process.is_alive():
            process.terminate()  # the replay stopped early (an error, ^C, a closed generator)
        process.join()
        messages.close()  # the pipe is at its end now, so the receiving thread has stopped
        receiving.close()


def _start(
    paths: Iterable[str],
    options: ReadOptions,
    policy: Policy,
    hasher: SubjectHasher,
    split: Split,
    second: Policy | None,
) -> tuple[Any, Connection]:
    """The reading process, started, and the end of its pipe."""
    paths = list(paths)
    if "-" in paths:
        raise InputError("stdin cannot be read ahead in another process")
    # spawn, not fork: the child starts clean, without copies of this process's threads or locks.
    context = multiprocessing.get_context("spawn")
    receiving, sending = context.Pipe(duplex=False)
    _widen(receiving)
    process = context.Process(
        target=_read, name="dismon-read", daemon=True, args=(sending, paths, options, policy, hasher, split, second)
    )
    try:
        process.start()
    except OSError as exc:  # no processes or pipes left (ulimit, a sandbox): say what to do instead
        receiving.close()
        sending.close()
        raise InputError(f"cannot start the reading process ({exc}); replay with --no-read-ahead") from exc
    sending.close()  # only the child writes: its exit then reads as end of file here
    return process, receiving


def _widen(pipe: Connection) -> None:
    """A 1 MiB pipe buffer instead of 64 KiB (Linux): the receiving thread needs the GIL back after each
    read, which can take a switch interval (5 ms) while the replay's thread is busy, so fewer, larger
    reads are what lets a batch through quickly. Where this is refused, the pipe keeps its size."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(pipe.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_BYTES)


def _received(receiving: Connection) -> Iterator[bytes]:
    """The pipe's messages as they are (unpickled by the replay's thread); EOFError when the writer is gone."""
    while True:
        yield receiving.recv_bytes()


def _read(
    out: Connection,
    paths: list[str],
    options: ReadOptions,
    policy: Policy,
    hasher: SubjectHasher,
    split: Split,
    second: Policy | None = None,
) -> None:
    """The reading process: batches down the pipe, then None (or the error). With a ``second`` policy it
    reduces every event under both and sends each policy's digests apart (:func:`read_ahead_two`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C is the replay's to handle; it stops this process
    reduce = Reducer(policy, hasher).reduce
    encode = encode_batch
    if second is not None:
        reduce = PairReducer(Reducer(policy, hasher), Reducer(second, hasher)).reduce  # type: ignore[assignment]

        def encode(pairs: list[Any]) -> bytes:
            return encode_batch((encode_batch([one for one, _ in pairs]), encode_batch([two for _, two in pairs])))

    share = {"reader": 1.0, "replay": 0.0}.get(split, 0.5)  # of the events, reduced here
    credit = 0.0

    def reduce_here(event: Event, event_ms: int) -> Digest | None:  # decided as events are decoded
        nonlocal credit
        credit += share
        if credit < 1.0:
            return None
        credit -= 1.0
        return reduce(event, event_ms)

    counter = ByteCounter()
    dead = list[DeadLetter]()
    times, items = array.array("q"), list[Any]()  # lines, digests, or (with a second policy) pairs
    try:
        for event_ms, _seq, digest, line in merged_events(
            paths, dead.append, options, counter, keep_raw=True, reduce=reduce_here
        ):
            times.append(event_ms)
            items.append(line if digest is None else digest)
            if len(items) >= BATCH_EVENTS:
                batch = (times.tobytes(), encode(items), dead, counter.consumed())
                started = time.perf_counter()
                out.send(batch)
                if split == "balanced":  # the replay has batches waiting already: reduce more here, else less
                    waited = time.perf_counter() - started > _WAITED_S
                    share = min(1.0, share + _STEP) if waited else max(0.0, share - _STEP)
                times, items = array.array("q"), []
                dead.clear()  # in place: merged_events holds its append (send has pickled the batch)
        out.send((times.tobytes(), encode(items), dead, counter.consumed()))
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
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        out.send(error)
