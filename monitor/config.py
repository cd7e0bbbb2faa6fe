"""What the commands read from files and the environment before the core gets it: the policy file and the
subject hash key. The core (``monitor.core``) reads neither; it is handed the results.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping

from monitor.core.findings import SubjectHasher
from monitor.core.policy import Policy, parse_policy
from monitor.errors import PolicyError, UsageError

KEY_ENV = "DISMON_SUBJECT_KEY"
KEY_FILE_ENV = "DISMON_SUBJECT_KEY_FILE"

log = logging.getLogger(__name__)


def load_policy(path: str) -> Policy:
    """Read and validate a policy file."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise PolicyError(path, "file", exc.strerror or str(exc)) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(path, f"byte {exc.start}", "file is not valid UTF-8") from exc
    return parse_policy(text, path)


def subject_hasher(environ: Mapping[str, str] = os.environ) -> SubjectHasher:
    """The subject hasher keyed from ``$DISMON_SUBJECT_KEY`` (text) or the file ``$DISMON_SUBJECT_KEY_FILE``;
    a random per-run key (with a warning) when neither is set."""
    path = environ.get(KEY_FILE_ENV)
    if path:
        try:
            with open(path, "rb") as handle:
                return SubjectHasher(handle.read().strip())
        except OSError as exc:
            raise UsageError(f"cannot read subject key file {path}: {exc.strerror}") from exc
    text = environ.get(KEY_ENV)
    if text:
        return SubjectHasher(text.encode())
    log.warning(
        "no %s or %s set: using a random per-run key, so subject_ref values will not match across runs",
        KEY_ENV,
        KEY_FILE_ENV,
    )
    return SubjectHasher(secrets.token_bytes(32))


LEDGER_KEY_ENV = "DISMON_LEDGER_KEY"
LEDGER_PUBLIC_KEY_ENV = "DISMON_LEDGER_PUBLIC_KEY"


def ledger_key_pem(path: str | None, public: bool = False, environ: Mapping[str, str] = os.environ) -> bytes | None:
    """The PEM of the ledger's signing key (or with ``public`` its public key): the file ``path`` (a flag or
    ``$DISMON_LEDGER_KEY_FILE``), else the PEM text in ``$DISMON_LEDGER_KEY`` (``$DISMON_LEDGER_PUBLIC_KEY``);
    None when neither is given."""
    if path:
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except OSError as exc:
            raise UsageError(f"cannot read the ledger key file {path}: {exc.strerror}") from exc
    text = environ.get(LEDGER_PUBLIC_KEY_ENV if public else LEDGER_KEY_ENV)
    return text.encode() if text else None
