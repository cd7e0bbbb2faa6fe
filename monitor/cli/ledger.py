"""``dismon ledger``: keys for the accounting of disclosures, and what auditors and individuals ask of it
(docs/ledger.md)."""

from __future__ import annotations

import argparse
import csv
import sys
from typing import Any

import orjson

from monitor.cli import arguments
from monitor.cli.common import EXIT_OK, env
from monitor.cli.worker import add_kafka_options, kafka_settings
from monitor.errors import UsageError

EXIT_BROKEN = 1
_PUBLIC_HELP = (
    "the ledger's public key, from dismon ledger keygen ($DISMON_LEDGER_PUBLIC_KEY_FILE, or the PEM itself in "
    "$DISMON_LEDGER_PUBLIC_KEY)"
)


def add_ledger(commands: Any) -> None:
    parser = commands.add_parser(
        "ledger",
        help="the accounting of disclosures: keys, verify, lookup, export",
        description="The accounting of disclosures that replay --ledger keeps: an entry for every disclosing "
        "response in a Merkle-tree ledger with signed checkpoints (docs/ledger.md).",
    )
    sub = parser.add_subparsers(dest="ledger_command", required=True, metavar="SUBCOMMAND")

    keygen = sub.add_parser("keygen", help="write a new signing key and its public key",
                            description="Write a new Ed25519 signing key (readable by its owner only) and its "
                            "public key, both PEM. The signing key stays with the monitor; the public key goes to "
                            "whoever verifies.")  # fmt: skip
    keygen.add_argument("--private", required=True, metavar="FILE", help="the signing key (refused if it exists)")
    keygen.add_argument("--public", required=True, metavar="FILE", help="the public key")
    keygen.set_defaults(run=_keygen)

    verify = sub.add_parser("verify", help="recompute the tree and check every entry and checkpoint",
                            description="Recompute the Merkle tree of a ledger directory, check every entry, every "
                            "checkpoint's signature and root, and with --against that the ledger still extends a "
                            "checkpoint kept from earlier. Exit 0: intact; 1: names the first entry or checkpoint "
                            "that does not verify; 2: usage error.")  # fmt: skip
    _add_source(verify)
    verify.add_argument("--against", metavar="CHECKPOINT",
                        help="a checkpoint (one line of checkpoints.jsonl) kept from earlier")  # fmt: skip
    verify.set_defaults(run=_verify)

    lookup = sub.add_parser("lookup", help="one person's accounting, from their name and date of birth on stdin",
                            description="Read a person's name and date of birth on stdin as JSON, "
                            '{"name": {"last": "...", "first": "..."}, "dob": "YYYY-MM-DD"} (never as arguments: '
                            "those end up in shell history and process lists), compute their subject_ref with the "
                            "subject key, and print their entries as JSON lines, each with its inclusion proof "
                            "checked against the latest checkpoint. Nothing is logged.")  # fmt: skip
    _add_source(lookup)
    lookup.set_defaults(run=_lookup)

    export = sub.add_parser("export", help="the accounting of a period: counts and entries",
                            description="The accounting of disclosures made in [--from, --to): counts by "
                            "agreement, recipient, purpose (statute) and verdict, and the entries themselves. The "
                            "ledger is verified first.")  # fmt: skip
    _add_source(export)
    export.add_argument("--from", dest="from_ms", type=arguments.timestamp, metavar="TIME", help="first instant")
    export.add_argument("--to", dest="to_ms", type=arguments.timestamp, metavar="TIME", help="end (exclusive)")
    export.add_argument("--format", choices=["json", "csv"], default="json", help="default json")
    export.set_defaults(run=_export)


def _add_source(parser: argparse.ArgumentParser) -> None:
    """Where the ledger is (a directory, or the worker's topics) and the public key that verifies it."""
    parser.add_argument("directory", metavar="DIR", nargs="?", help="a ledger directory (replay --ledger)")
    kafka_help = "read <prefix>.ledger and <prefix>.ledger-checkpoints instead (worker --ledger-key)"
    parser.add_argument("--kafka", action="store_true", help=kafka_help)
    add_kafka_options(parser)
    parser.add_argument("--public-key", default=env("LEDGER_PUBLIC_KEY_FILE"), metavar="FILE", help=_PUBLIC_HELP)


def _keygen(args: argparse.Namespace) -> int:
    from monitor.outputs.ledger import generate_keys

    try:
        key = generate_keys(args.private, args.public)
    except FileExistsError:
        raise UsageError(f"{args.private} exists: a signing key is never overwritten") from None
    except OSError as exc:
        raise UsageError(f"cannot write the keys: {exc}") from exc
    print(f"key {key}: signing key {args.private} (keep it with the monitor), public key {args.public}")
    return EXIT_OK


def _verified(args: argparse.Namespace, against: Any = None) -> Any:
    """The ledger of ``args.directory`` (or the topics, with --kafka), verified; prints why and returns None
    when it does not verify."""
    from monitor.config import ledger_key_pem
    from monitor.outputs.ledger import Broken, load_public_key, verify, verify_lines

    pem = ledger_key_pem(args.public_key, public=True)
    if pem is None:
        raise UsageError(
            "the ledger's public key: --public-key FILE, $DISMON_LEDGER_PUBLIC_KEY_FILE or $DISMON_LEDGER_PUBLIC_KEY"
        )
    if (args.directory is None) == (not args.kafka):
        raise UsageError("name a ledger directory, or --kafka for the worker's ledger topics (not both)")
    public = load_public_key(pem, args.public_key or "$DISMON_LEDGER_PUBLIC_KEY")
    try:
        if not args.kafka:
            return verify(args.directory, public, against)
        entries, checkpoints = _topics(args)
        return verify_lines(entries, checkpoints, public, against)
    except Broken as exc:
        print(f"ledger {_name(args)} does NOT verify: {exc}")
        return None
    except OSError as exc:
        raise UsageError(f"cannot read the ledger {args.directory}: {exc}") from exc


def _name(args: argparse.Namespace) -> str:
    return f"{args.topic_prefix}.ledger" if args.kafka else str(args.directory)


def _topics(args: argparse.Namespace) -> tuple[list[bytes], list[bytes]]:
    """The records of the worker's ledger topic and of its checkpoints topic, in order."""
    import asyncio

    from monitor.live.kafka import read_partitions

    kafka = kafka_settings(args)
    read: dict[str, list[bytes]] = {kafka.ledger_topic: [], kafka.ledger_checkpoints_topic: []}
    for topic, values in read.items():

        def keep(_partition: int, _key: bytes | None, value: bytes | None, into: list[bytes] = values) -> None:
            into.append(value or b"")

        asyncio.run(read_partitions(kafka, topic, [0], keep))
    return read[kafka.ledger_topic], read[kafka.ledger_checkpoints_topic]


def _verify(args: argparse.Namespace) -> int:
    import msgspec

    from monitor.outputs.ledger import read_checkpoint

    against = None
    if args.against is not None:
        try:
            with open(args.against, "rb") as handle:
                against = read_checkpoint(handle.read().strip().splitlines()[-1])
        except (OSError, IndexError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UsageError(f"{args.against} is not a checkpoint: {exc}") from exc
    ledger = _verified(args, against)
    if ledger is None:
        return EXIT_BROKEN
    latest = ledger.latest
    head = "no checkpoint yet" if latest is None else f"latest checkpoint {latest.size:,} entries at {latest.time}"
    kept = "" if against is None else f"; consistent with the kept checkpoint of {against.size:,} entries"
    print(f"ledger {_name(args)} verifies: {len(ledger.records):,} entries, {len(ledger.checkpoints)} "
          f"checkpoint(s), {head}{kept}")  # fmt: skip
    return EXIT_OK


def _lookup(args: argparse.Namespace) -> int:
    from monitor.config import subject_hasher
    from monitor.core.digests import subject_ref
    from monitor.core.findings import format_ref
    from monitor.outputs.ledger import inclusion

    try:
        person = orjson.loads(sys.stdin.buffer.read())
        name, dob = person["name"], person.get("dob")
        last, first = name.get("last"), name.get("first")
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise UsageError(
            'stdin must be JSON: {"name": {"last": "...", "first": "..."}, "dob": "YYYY-MM-DD"}'
        ) from None  # the input is never echoed: it is personal data
    ref = format_ref(subject_ref(subject_hasher(), last, first, dob))
    ledger = _verified(args)
    if ledger is None:
        return EXIT_BROKEN
    found = 0
    for record in ledger.records:
        if record.entry.subject_ref == ref:
            found += 1
            proven = inclusion(ledger, record.seq)
            state = "not yet covered by a checkpoint" if proven is None else "verified" if proven else "FAILED"
            sys.stdout.buffer.write(orjson.dumps({**_entry(record), "inclusion": state}) + b"\n")
            if proven is False:
                return EXIT_BROKEN
    print(f"{found} disclosure(s) of subject {ref}", file=sys.stderr)
    return EXIT_OK


def _entry(record: Any) -> dict[str, Any]:
    from monitor.core.timeutil import format_ms

    entry = record.entry
    return {
        "seq": record.seq,
        "id": record.id,
        "event_time": format_ms(entry.event_time_ms),
        "agreement_id": entry.agreement_id,
        "request_id": entry.request_id,
        "recipient_agency": entry.recipient_agency,
        "recipient_unit": entry.recipient_unit,
        "fields": list(entry.fields),
        "statute": entry.statute,
        "case_id": entry.case_id,
        "subject_ref": entry.subject_ref,
        "verdict": entry.verdict,
        "findings": [{"rule": f.rule, "severity": f.severity, "alert_id": f.alert_id} for f in entry.findings],
    }


def _export(args: argparse.Namespace) -> int:
    from monitor.outputs.ledger import between, totals

    ledger = _verified(args)
    if ledger is None:
        return EXIT_BROKEN
    records = list(between(ledger, args.from_ms, args.to_ms))
    counts = totals(records)
    if args.format == "json":
        document = {"entries_total": len(records), "counts": counts, "entries": [_entry(r) for r in records]}
        sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
        return EXIT_OK
    writer = csv.writer(sys.stdout)
    writer.writerow(["count_by", "value", "entries"])
    for group, values in counts.items():
        for value, count in values.items():
            writer.writerow([group, value, count])
    writer.writerow([])
    columns = list(_entry(records[0])) if records else ["seq"]
    writer.writerow(columns)
    for record in records:
        row = _entry(record)
        writer.writerow([";".join(f"{f['rule']}:{f['alert_id']}" for f in v) if k == "findings"
                         else ";".join(v) if k == "fields" else v for k, v in row.items()])  # fmt: skip
    return EXIT_OK
