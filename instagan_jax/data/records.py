"""The record types that flow between sources, preparation scripts and the pipeline."""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np


@dataclasses.dataclass
class Record:
    """One image of one domain with its instance masks.

    `image` is RGB uint8 (H, W, 3); each mask is uint8 (H, W) with 0 = background and
    255 = instance (soft values in between allowed); `id` names the record in logs and errors,
    `origin` says where it was read from (e.g. the image file), if anywhere.
    """

    image: np.ndarray
    masks: list[np.ndarray]
    id: str
    origin: str = ""

    def described(self) -> str:
        """'record ID (ORIGIN)', for messages."""
        return f"record {self.id}" + (f" ({self.origin})" if self.origin else "")


@dataclasses.dataclass
class EncodedRecord:
    """A record as files: `image` holds the bytes of an image file with suffix `image_suffix`,
    `masks` the PNG bytes of each instance mask; `id` is the file stem (may contain '/')."""

    id: str
    image: bytes
    image_suffix: str
    masks: list[bytes]


class RecordSource(Protocol):
    """What the pipeline reads: a random-access, picklable sequence of `Record`s."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Record: ...
