"""Attribute-labelled data (LOMIT): images with multi-label 0/1 attributes, and their object mask where known.

    source = data.open_attributes("attribute_shapes", size=1000)    # or "celeba", root=...
    loader = data.AttributeLoader(source, batch_size=8, transform=data.TransformConfig(crop_size=(64, 64)))
    batch = next(loader)   # img (B,H,W,3) in [-1, 1], labels (B,C) 0/1, mask (B,H,W,1) 0/1, has_mask (B,), id (B,)

'attribute_shapes' is synthetic: one disc or square on a `shapes` background, with the attributes
`blue` (red or blue object) and `striped` (plain or striped) drawn 50/50 independently of each other
and of the background, and the object's true mask. 'celeba' reads the CelebA layout (no masks).
Stream element g takes record `perm_e(g mod N)` and crops and flips image and mask by one draw from a
generator seeded by (seed, g): a batch is a pure function of (seed, source, settings, batch number), and
the state is the number of batches served (`PairLoader`'s, reused).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from instagan_jax.data.errors import DataError
from instagan_jax.data.imageio import read_image
from instagan_jax.data.options import required, taken_by
from instagan_jax.data.paired import _AlignedMaker
from instagan_jax.data.pipeline import PairLoader
from instagan_jax.data.records import Record
from instagan_jax.data.shapes import _background, check_background, check_object_size
from instagan_jax.data.transforms import TransformConfig, resize, transform_record


@dataclasses.dataclass
class AttributeRecord:
    """One image with its attribute labels: `image` RGB uint8 (H, W, 3), `labels` float32 (C,) in {0, 1},
    `mask` bool (H, W) of the object where known (else None); `id` and `origin` as `Record`'s."""

    image: np.ndarray
    labels: np.ndarray
    mask: np.ndarray | None
    id: str
    origin: str = ""

    def as_record(self) -> Record:
        """The image with its mask (if any) as a `Record` of one 0/255 instance mask."""
        masks = [] if self.mask is None else [self.mask.astype(np.uint8) * np.uint8(255)]
        return Record(image=self.image, masks=masks, id=self.id, origin=self.origin)


class AttributeSource(Protocol):
    """A random-access, picklable sequence of `AttributeRecord`s, with its attribute names."""

    attributes: tuple[str, ...]

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> AttributeRecord: ...


# ---------------------------------------------------------------- synthetic: attribute shapes

SHAPES_ATTRIBUTES = ("blue", "striped")
RED, BLUE = (200, 40, 40), (40, 60, 210)  # object colours of blue = 0 and blue = 1
COLOUR_JITTER = 20  # per channel, per image
STRIPE_ROWS = 4  # striped: 4 rows at full colour, 4 at half brightness (period 8)
_ATTRIBUTE_SHAPES_CODE = 3  # generator code, apart from the shapes domains' 0, 1, 2


def object_mask(rng: np.random.Generator, height: int, width: int, object_size: tuple[float, float]) -> np.ndarray:
    """A disc or a square (50/50) of extent `object_size` x min(height, width), inside the image: bool (H, W)."""
    half = rng.uniform(*object_size) * min(height, width) / 2.0
    disc = rng.random() < 0.5
    cy, cx = rng.uniform(half, height - half), rng.uniform(half, width - half)
    dy, dx = np.arange(height)[:, None] + 0.5 - cy, np.arange(width)[None, :] + 0.5 - cx
    return dy**2 + dx**2 <= half**2 if disc else (np.abs(dy) <= half) & (np.abs(dx) <= half)


def object_paint(rng: np.random.Generator, labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """float32 (H, W, 3) in [0, 1]: the object's colour by `blue` (jittered), row-striped if `striped`."""
    base = np.array(BLUE if labels[0] else RED, dtype=np.float32)
    colour = (base + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, 3)) / np.float32(255.0)
    phase = int(rng.integers(2 * STRIPE_ROWS))
    dim = (np.arange(height) + phase) // STRIPE_ROWS % 2 == 1
    brightness = np.where(dim & bool(labels[1]), np.float32(0.5), np.float32(1.0))
    return np.broadcast_to(brightness[:, None, None] * colour, (height, width, 3))


def attribute_shapes_record(index: int, seed: int = 0, height: int = 72, width: int = 72,
                            object_size: tuple[float, float] = (0.15, 0.35),
                            background: str = "textured") -> AttributeRecord:
    """Record `index` of the attribute shapes: a pure function of its arguments. The background (a
    `shapes` background kind) and the object's shape and place come from one generator, the labels and
    the object's looks from another."""
    scene = np.random.default_rng([seed, _ATTRIBUTE_SHAPES_CODE, index, 0])
    looks = np.random.default_rng([seed, _ATTRIBUTE_SHAPES_CODE, index, 1])
    image = _background(scene, height, width, background)
    mask = object_mask(scene, height, width, object_size)
    labels = looks.integers(0, 2, len(SHAPES_ATTRIBUTES)).astype(np.float32)
    image[mask] = object_paint(looks, labels, height, width)[mask]
    pixels = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return AttributeRecord(image=pixels, labels=labels, mask=mask, id=f"attr_shapes_{index:06d}")


class AttributeShapesSource:
    """`size` records of the attribute shapes (module doc) as a random-access source."""

    attributes = SHAPES_ATTRIBUTES

    def __init__(self, size: int = 1000, seed: int = 0, height: int = 72, width: int = 72,
                 object_size: tuple[float, float] = (0.15, 0.35), background: str = "textured"):
        check_background(background)
        if size < 1:
            raise ValueError(f"attribute shapes need at least one record, got size={size}")
        if height < 16 or width < 16:
            raise ValueError(f"attribute shapes images must be at least 16x16, got {height}x{width}")
        self.size, self.seed, self.height, self.width = size, seed, height, width
        self.object_size = check_object_size(object_size, largest=0.9, kind="attribute shapes")
        self.background = background

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of every record, known from the options (`transforms.check_crop_fits`)."""
        return self.height, self.width

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> AttributeRecord:
        if not 0 <= index < self.size:
            raise IndexError(f"attribute shapes index {index} out of range [0, {self.size})")
        return attribute_shapes_record(index, self.seed, self.height, self.width, self.object_size, self.background)

    def __repr__(self) -> str:
        return (f"AttributeShapesSource(size={self.size}, seed={self.seed}, {self.height}x{self.width}, "
                f"object_size={self.object_size}, background={self.background!r})")


# ---------------------------------------------------------------- CelebA

CELEBA_ATTRIBUTES = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Male", "Smiling")
CELEBA_LAYOUT = ("<root>/img_align_celeba/*.jpg, <root>/list_attr_celeba.txt and optionally "
                 "<root>/list_eval_partition.txt")
CELEBA_PHASES = {"train": "0", "val": "1", "test": "2"}  # partition codes; phase "all" takes every image
CELEBA_FILTER = "bilinear"


def read_attribute_table(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """(attribute names, file names, bool (N, A) values == 1) of a CelebA `list_attr_celeba.txt`: line 1 the
    count, line 2 the names, then `file v1 v2 ...` with values -1/1; DataError naming file and line."""
    lines = path.read_text().splitlines()
    if len(lines) < 2 or not lines[0].strip().isdigit():
        raise DataError(f"{path}:1: expected the number of images, then a line of attribute names")
    names = lines[1].split()
    files, rows = [], []
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(names) + 1 or not set(fields[1:]) <= {"-1", "1"}:
            raise DataError(f"{path}:{number}: expected a file name and {len(names)} values -1 or 1, "
                            f"got {line.strip()!r}")
        files.append(fields[0])
        rows.append([value == "1" for value in fields[1:]])
    if int(lines[0]) != len(files):
        raise DataError(f"{path}:1: says {int(lines[0])} images but lists {len(files)}")
    return names, files, np.array(rows, dtype=bool).reshape(len(files), len(names))


def read_partition(path: Path) -> dict[str, str]:
    """File name -> partition code ('0' train, '1' val, '2' test) of a `list_eval_partition.txt`."""
    partition = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in CELEBA_PHASES.values():
            raise DataError(f"{path}:{number}: expected a file name and 0, 1 or 2, got {line.strip()!r}")
        partition[fields[0]] = fields[1]
    return partition


def attribute_columns(names: Sequence[str], wanted: Sequence[str], path: Path) -> list[int]:
    """Column of each wanted attribute; ValueError listing the known ones for an unknown one."""
    unknown = [a for a in wanted if a not in names]
    if unknown or not wanted:
        problem = f"attribute(s) {unknown} not in {path}" if unknown else "at least one attribute is needed"
        raise ValueError(f"CelebA {problem}; known: {', '.join(names)}")
    return [names.index(a) for a in wanted]


def centre_square(image: np.ndarray) -> np.ndarray:
    """The centred square of side min(H, W): rows 20..197 of an aligned 178x218 CelebA image."""
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return image[top : top + side, left : left + side]


class CelebASource:
    """CelebA images of a phase (train, val, test or all) with the chosen attributes as 0/1 labels, centre
    cropped to a square and resized to `image_size`; no masks. Only the text files are read up front."""

    def __init__(self, root: str | os.PathLike, attributes: Sequence[str] = CELEBA_ATTRIBUTES,
                 phase: str = "train", image_size: int = 128):
        root = Path(root)
        self.folder, table = root / "img_align_celeba", root / "list_attr_celeba.txt"
        for path in (self.folder, table):
            if not path.exists():
                raise DataError(f"{path} not found: CelebA data needs {CELEBA_LAYOUT}")
        if phase not in (*CELEBA_PHASES, "all"):
            raise ValueError(f"CelebA phase must be train, val, test or all, got {phase!r}")
        if not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"CelebA image_size must be a positive integer, got {image_size!r}")
        names, files, values = read_attribute_table(table)
        self.attributes = (attributes,) if isinstance(attributes, str) else tuple(attributes)
        self.labels = values[:, attribute_columns(names, self.attributes, table)].astype(np.float32)
        self.files = files
        if phase != "all":
            keep = self._in_phase(root / "list_eval_partition.txt", phase)
            self.files, self.labels = [files[i] for i in keep], self.labels[keep]
        self.table, self.phase, self.image_size = table, phase, image_size

    def _in_phase(self, partition_file: Path, phase: str) -> np.ndarray:
        if not partition_file.exists():
            raise ValueError(f"CelebA phase {phase!r} needs {partition_file} (without it only phase 'all' is "
                             "allowed)")
        partition = read_partition(partition_file)
        return np.array([i for i, f in enumerate(self.files) if partition.get(f) == CELEBA_PHASES[phase]], dtype=int)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> AttributeRecord:
        if not 0 <= index < len(self):
            raise IndexError(f"CelebA index {index} out of range [0, {len(self)})")
        path = self.folder / self.files[index]
        if not path.is_file():
            raise DataError(f"{path}: listed in {self.table} but missing")
        image = resize(centre_square(read_image(path)), (self.image_size, self.image_size), CELEBA_FILTER)
        return AttributeRecord(image=np.ascontiguousarray(image), labels=self.labels[index].copy(), mask=None,
                               id=Path(self.files[index]).stem, origin=str(path))

    def __repr__(self) -> str:
        return f"CelebASource({str(self.folder.parent)!r}, phase={self.phase!r}, {len(self)} images, {self.attributes})"


# ---------------------------------------------------------------- opening and loading


def open_attributes(kind: str, **options: Any) -> AttributeSource:
    """The `AttributeSource` of an attribute method's data config.

    kind 'attribute_shapes': size=1000, seed=0, height=72, width=72, object_size=(0.15, 0.35),
    background='textured' (or 'smooth', 'plain': the `shapes` background kinds).
    kind 'celeba': root (required), attributes=CELEBA_ATTRIBUTES, phase='train' (or val, test, all),
    image_size=128.
    """
    if kind == "attribute_shapes":
        return AttributeShapesSource(**taken_by(AttributeShapesSource, kind, options))
    if kind == "celeba":
        root = required(options, "root")
        return CelebASource(root, **taken_by(CelebASource, kind, options, also=["root"], besides=["root"]))
    raise ValueError(f"data kind {kind!r} has no attribute labels: choose attribute_shapes or celeba")


def transform_example(record: AttributeRecord, cfg: TransformConfig, seed: list[int] | None) -> dict[str, Any]:
    """{'img' (H, W, 3) in [-1, 1], 'labels' (C,), 'mask' (H, W, 1) in {0, 1}, 'has_mask', 'id'}: the image and
    its mask resized, cropped and flipped alike (one draw from a generator seeded by `seed`; None: centre crop,
    no flip); the mask is all zeros where unknown."""
    cfg = dataclasses.replace(cfg, ins_max=1, mask_filter="nearest")
    example = transform_record(record.as_record(), cfg, None if seed is None else np.random.default_rng(seed))
    return {"img": example["img"], "labels": np.asarray(record.labels, dtype=np.float32),
            "mask": (example["masks"][0] + np.float32(1.0)) / np.float32(2.0),
            "has_mask": record.mask is not None, "id": record.id}


class _ExampleMaker(_AlignedMaker):
    make = staticmethod(transform_example)
    what = "record"


class AttributeLoader(PairLoader):
    """Iterator over batches {img, labels, mask, has_mask, id} of an `AttributeSource` (module doc).

    Arguments (batch_size, transform, seed, shuffle, num_epochs, num_threads, num_workers, skip_bad,
    shard_index, shard_count), `get_state` / `set_state`, sharding and `close` as `PairLoader`'s.
    """

    def __init__(self, source: AttributeSource, **options: Any):
        super().__init__(source, source, **options)
        self._maker = _ExampleMaker(source, self.transform, self.seed, self.skips.skip_bad)
