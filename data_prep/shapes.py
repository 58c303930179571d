"""The shapes data set written out as files (for demos, benchmarks and the folder/TFDS paths)."""

from __future__ import annotations

from collections.abc import Iterator

from instagan_jax.data.folder import encode_record
from instagan_jax.data.records import EncodedRecord
from instagan_jax.data.shapes import ShapesSource


def _encoded(source: ShapesSource) -> Iterator[EncodedRecord]:
    return (encode_record(source[i]) for i in range(len(source)))


def shapes_splits(
    size: int = 100, seed: int = 0, height: int = 220, width: int = 220, max_instances: int = 6,
    phase: str = "train", **looks,
) -> dict[str, Iterator[EncodedRecord]]:
    """{'<phase>A': discs/ellipses, '<phase>B': squares/rectangles}, `size` records each; `looks`: the
    other `ShapesSource` options (object_size, background, background_rgb, rotate, elongated)."""
    sources = {domain: ShapesSource(domain, size, seed, height, width, max_instances, **looks) for domain in "AB"}
    return {f"{phase}{domain}": _encoded(source) for domain, source in sources.items()}
