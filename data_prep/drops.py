"""What the preparation recipes leave out, counted per split and reason, and the empty-split check."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

from instagan_jax.data.errors import DataError
from instagan_jax.data.records import EncodedRecord


class DropTally:
    """Images and masks a recipe dropped: `tally[split][('masks', 'outside the crop')] += 1`."""

    def __init__(self) -> None:
        self.counts: dict[str, Counter[tuple[str, str]]] = {}

    def __getitem__(self, split: str) -> Counter[tuple[str, str]]:
        return self.counts.setdefault(split, Counter())

    def describe(self, split: str) -> str:
        """E.g. '2 images (no mask left: 2), 5 masks (outside the crop: 4, crowd: 1)'; '' if none."""
        parts = []
        for what in ("images", "masks"):
            reasons = {reason: n for (kind, reason), n in (+self.counts.get(split, Counter())).items() if kind == what}
            if reasons:
                details = ", ".join(f"{reason}: {n}" for reason, n in sorted(reasons.items()))
                parts.append(f"{sum(reasons.values())} {what} ({details})")
        return ", ".join(parts)


def non_empty(split: str, records: Iterable[EncodedRecord], drops: DropTally) -> Iterator[EncodedRecord]:
    """`records` as they come; `DataError` at the end if there was none (naming what was dropped)."""
    count = 0
    for record in records:
        count += 1
        yield record
    if count == 0:
        dropped = drops.describe(split)
        raise DataError(f"split {split} is empty (dropped: {dropped or 'nothing'}); nothing was written")
