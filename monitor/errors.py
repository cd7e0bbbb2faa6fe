"""The project's exception tree.

    DismonError                 base of everything this package raises on purpose
    ├── PolicyError             a policy file is unreadable or invalid (names file, key/line, reason)
    ├── InputError              an input file or stream cannot be opened or read
    ├── BrokerError             the Kafka cluster cannot be used (raised where aiokafka's error enters:
    │                           monitor/live/kafka.py)
    └── UsageError              a command-line argument or the deployment is wrong (a port in use,
                                input topics that are not co-partitioned)

Invalid *events* are not exceptions: they become dead-letter records
(:class:`monitor.core.events.Invalid`) so one bad event never stops the monitor.
Third-party errors are translated where they enter (``raise ... from exc``).
"""

from __future__ import annotations


class DismonError(Exception):
    """Base class for errors raised by Disclosure Monitor."""


class PolicyError(DismonError):
    """A policy file is broken; the message names the file, the key or line, and the reason."""

    def __init__(self, path: str, where: str, reason: str) -> None:
        self.path = path
        self.where = where
        self.reason = reason
        super().__init__(f"{path}: {where}: {reason}")


class InputError(DismonError):
    """An input could not be opened or read."""


class BrokerError(DismonError):
    """The Kafka cluster cannot be reached or refuses us; the message says which cluster and why."""


class UsageError(DismonError):
    """A command-line argument is invalid."""
