"""Disclosure Monitor: watches data-sharing agreements for improper disclosures.

The package is a pure detection core (``events``, ``policy``, ``checks``,
``join``, ``rules``, ``detector``) with thin shells around it (``replay``,
``simulate``, ``cli``). The core knows nothing of Kafka, files or the wall
clock.
"""

__version__ = "0.1.0"
