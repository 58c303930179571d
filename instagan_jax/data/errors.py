"""The input pipeline's exception type and its skip-and-count policy for bad records."""

from __future__ import annotations

import logging

log = logging.getLogger("instagan_jax.data")


class DataError(ValueError):
    """Bad input data: the message names the file, record or value at fault."""


class SkipLog:
    """Raises bad-record errors, or (with `skip_bad`) logs each once and counts them."""

    def __init__(self, skip_bad: bool = False):
        self.skip_bad = skip_bad
        self.count = 0
        self._seen: set[str] = set()

    def handle(self, message: str) -> None:
        """Count and log one skipped bad record; raise `DataError(message)` unless skipping."""
        if not self.skip_bad:
            raise DataError(message)
        self.count += 1
        if message not in self._seen:
            self._seen.add(message)
            log.warning("skipping bad record: %s", message)
