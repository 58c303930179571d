"""Paired (aligned) data for pix2pix: sources of (A, B) record pairs and a loader of aligned batches.

    pairs = data.open_paired("aligned", root="facades")        # <root>/<phase>/*.jpg, A|B side by side
    pairs = data.open_paired("shapes", paired=True, size=1000)  # same scene, discs vs squares
    loader = data.PairedLoader(pairs, batch_size=4, transform=data.TransformConfig(ins_max=0), seed=0)
    batch = next(loader)   # img_A (B,H,W,3) input, img_B (B,H,W,3) target in [-1, 1], id_A, id_B

Stream element g takes pair `perm_e(g mod N)` of a fresh permutation per epoch and crops and flips A
and B by one draw from a generator seeded by (seed, g): a batch is a pure function of (seed, source,
settings, batch number), and the state is the number of batches served (`PairLoader`'s, reused).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from instagan_jax.data.errors import DataError
from instagan_jax.data.folder import image_index
from instagan_jax.data.imageio import read_image
from instagan_jax.data.pipeline import _MAX_BAD_IN_A_ROW, PairLoader
from instagan_jax.data.records import Record, RecordSource
from instagan_jax.data.transforms import TransformConfig, transform_record


class PairSource(Protocol):
    """A random-access, picklable sequence of aligned (A record, B record) pairs."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[Record, Record]: ...


def split_aligned(image: np.ndarray, origin: str) -> tuple[np.ndarray, np.ndarray]:
    """An A|B side-by-side image -> (A, B) halves; DataError naming `origin` if the width is odd."""
    width = image.shape[1]
    if width % 2:
        raise DataError(f"{origin}: width {width} is odd, but an aligned image holds A and B side by side "
                        "at equal widths")
    return image[:, : width // 2], image[:, width // 2 :]


class AlignedSource:
    """The reference's aligned layout: every image in `<root>/<phase>/` (recursive, sorted by path)
    holds input A on its left half and target B on its right half."""

    def __init__(self, root: str | os.PathLike, phase: str = "train"):
        self.folder = Path(root) / phase
        self.files = [self.folder / rel for rel in image_index(self.folder).values()]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Record, Record]:
        path = self.files[index]
        name = path.relative_to(self.folder).with_suffix("").as_posix()
        a, b = split_aligned(read_image(path), str(path))
        return (Record(image=a, masks=[], id=f"{name}_A", origin=str(path)),
                Record(image=b, masks=[], id=f"{name}_B", origin=str(path)))

    def __repr__(self) -> str:
        return f"AlignedSource({str(self.folder)!r}, {len(self)} pairs)"


@dataclasses.dataclass(frozen=True)
class ZippedPairs:
    """Record i of source A with record i of source B (e.g. paired shapes domains)."""

    source_a: RecordSource
    source_b: RecordSource

    def __post_init__(self) -> None:
        if len(self.source_a) != len(self.source_b):
            raise ValueError(f"paired sources differ in length: {len(self.source_a)} and {len(self.source_b)}")

    @property
    def image_size(self) -> tuple[int, int] | None:
        """Source A's record size where it is known from the options (both sources must match anyway)."""
        return getattr(self.source_a, "image_size", None)

    def __len__(self) -> int:
        return len(self.source_a)

    def __getitem__(self, index: int) -> tuple[Record, Record]:
        return self.source_a[index], self.source_b[index]


def transform_pair(pair: tuple[Record, Record], cfg: TransformConfig, seed: list[int] | None) -> dict[str, Any]:
    """{'img_A', 'img_B', 'id_A', 'id_B'}: both images resized, cropped and flipped alike (one draw from
    a generator seeded by `seed`; None: centre crop, no flip); masks are not kept."""
    a, b = pair
    if a.image.shape != b.image.shape:
        raise DataError(f"{a.described()} is {a.image.shape} but its pair {b.described()} is {b.image.shape}")
    cfg = dataclasses.replace(cfg, ins_max=0)
    out = {}
    for domain, record in (("A", a), ("B", b)):
        unmasked = dataclasses.replace(record, masks=[])
        example = transform_record(unmasked, cfg, None if seed is None else np.random.default_rng(seed))
        out[f"img_{domain}"], out[f"id_{domain}"] = example["img"], example["id"]
    return out


class _AlignedMaker:
    """Builds stream element g from its position with `make` (picklable, so it can run in worker processes);
    a subclass may build other elements from other sources by setting `make` and `what`."""

    make = staticmethod(transform_pair)  # (source item, TransformConfig, seed list) -> element
    what = "pair"  # what a source item is, for messages

    def __init__(self, source: PairSource, cfg: TransformConfig, seed: int, skip_bad: bool):
        self.source, self.cfg, self.seed, self.skip_bad = source, cfg, seed, skip_bad

    def __call__(self, g: int, position: int) -> dict[str, Any]:
        skipped: list[str] = []
        index = position % len(self.source)
        for _ in range(_MAX_BAD_IN_A_ROW):
            try:
                element = self.make(self.source[index], self.cfg, [self.seed, g, 1])
                return {**element, "skipped": skipped}
            except DataError as err:
                if not self.skip_bad:
                    raise
                skipped.append(f"{self.what} {index}: {err}")
                index = (index + 1) % len(self.source)
        raise DataError(f"{_MAX_BAD_IN_A_ROW} bad {self.what}s in a row, last: {skipped[-1]}")


class PairedLoader(PairLoader):
    """Iterator over aligned batches {img_A, img_B, id_A, id_B} of a `PairSource` (module doc).

    Arguments, `get_state` / `set_state`, sharding and `close` as `PairLoader`'s.
    """

    def __init__(self, source: PairSource, **options: Any):
        super().__init__(source, source, **options)
        self._maker = _AlignedMaker(source, self.transform, self.seed, self.skips.skip_bad)
