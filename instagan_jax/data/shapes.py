"""The built-in procedural data set: round objects (domain A) and angular ones (domain B).

Every record is a pure function of its arguments (domain, index, seed, size, options): 1 to
`max_instances` non-overlapping objects of random size, aspect, rotation and colour on a background,
with exact per-instance masks. Domain A draws discs and ellipses, domain B squares and
rectangles, so a translated mask can be checked for the target shape (`rectangularity`). NumPy only.

Options beyond the size: `background` ('textured': colour noise, stripes and grain; 'smooth': the
colour noise alone; 'plain': one flat colour), `background_rgb` (the background's base colour, [r, g, b]
in 0-255, the same in every image; default null: a random muted colour per image), `rotate` (false:
every object axis-aligned) and `elongated` (the share of ellipses / rectangles among the objects; the
rest are discs / squares).
"""

from __future__ import annotations

import colorsys

import numpy as np

from instagan_jax.data.records import Record

_DOMAIN_CODES = {"A": 0, "B": 1}
_PAIRED_CODE = 2  # the generator of paired records, common to both domains
# rectangularity: discs/ellipses below, squares/rectangles at or above (all masks at 200x200; 1% of A
# and 88% of B masks at the default config's 72x72, where small rotated squares are jagged)
ROUND_ANGULAR_THRESHOLD = 0.84
OBJECT_SIZE = (0.06, 0.2)  # default range of an object's half extent, as a fraction of min(height, width)
_PLACEMENT_TRIES = 40
BACKGROUNDS = ("textured", "smooth", "plain")


def _domain_code(domain: str) -> int:
    if domain not in _DOMAIN_CODES:
        raise ValueError(f"shapes domain must be 'A' or 'B', got {domain!r}")
    return _DOMAIN_CODES[domain]


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """(H, W, 3) float32 noise in [0, 1], bilinearly interpolated from a `cells` x `cells` grid."""
    grid = rng.random((cells, cells, 3), dtype=np.float32)

    def weights(n: int) -> np.ndarray:
        pos = np.linspace(0.0, cells - 1.0, n, dtype=np.float32)
        low = np.minimum(pos.astype(np.int64), cells - 2)
        frac = pos - low
        out = np.zeros((n, cells), dtype=np.float32)
        out[np.arange(n), low] = 1.0 - frac
        out[np.arange(n), low + 1] = frac
        return out

    rows, cols = weights(height), weights(width)
    return np.stack([rows @ grid[:, :, c] @ cols.T for c in range(3)], axis=-1)


def _background(rng: np.random.Generator, height: int, width: int, kind: str = "textured",
                rgb: tuple[float, float, float] | None = None) -> np.ndarray:
    """A base colour (`rgb` in 0-255, or a random muted one); 'smooth' adds smooth colour noise,
    'textured' also stripes and fine grain. Float32 (H, W, 3), clipped later."""
    hue, sat, val = rng.random(), rng.uniform(0.1, 0.4), rng.uniform(0.35, 0.75)  # drawn either way
    base = np.array(colorsys.hsv_to_rgb(hue, sat, val) if rgb is None else np.divide(rgb, 255.0), dtype=np.float32)
    if kind == "plain":
        return np.broadcast_to(base, (height, width, 3)).copy()
    noise = _smooth_noise(rng, height, width, int(rng.integers(3, 9)))
    if kind == "smooth":
        return (base - 0.175) + 0.35 * noise
    angle, period = rng.uniform(0, np.pi), rng.uniform(6.0, 24.0)
    fy, fx = np.sin(angle) * 2 * np.pi / period, np.cos(angle) * 2 * np.pi / period
    ys, xs = np.arange(height, dtype=np.float32), np.arange(width, dtype=np.float32)
    # sin(fx x + fy y), written as a sum of two outer products
    stripes = np.outer(np.cos(fy * ys), np.sin(fx * xs)) + np.outer(np.sin(fy * ys), np.cos(fx * xs))
    grain = rng.random((height, width), dtype=np.float32)
    grey = (0.06 * stripes + 0.08 * (grain - 0.5)).astype(np.float32)
    return (base - 0.175) + 0.35 * noise + grey[..., None]


def check_object_size(object_size, largest: float = 0.45, kind: str = "shapes") -> tuple[float, float]:
    """`object_size` as a (low, high) tuple; ValueError unless 0 < low <= high <= `largest` (the shapes'
    half extents: 0.45 of the side; attribute shapes give whole extents)."""
    try:
        low, high = (float(x) for x in object_size)
    except (TypeError, ValueError):
        raise ValueError(f"{kind} object_size must be [low, high], got {object_size!r}") from None
    if not 0.0 < low <= high <= largest:
        raise ValueError(f"{kind} object_size must satisfy 0 < low <= high <= {largest:g}, got {object_size!r}")
    return low, high


def check_background(background: str) -> None:
    """ValueError naming a background kind that the shapes do not know."""
    if background not in BACKGROUNDS:
        raise ValueError(f"shapes background must be one of {', '.join(BACKGROUNDS)}, got {background!r}")


def check_background_rgb(rgb) -> tuple[float, float, float] | None:
    """`background_rgb` as a tuple of 3 numbers in [0, 255], or None; ValueError otherwise."""
    if rgb is None:
        return None
    try:
        values = tuple(float(x) for x in rgb)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or not all(0.0 <= v <= 255.0 for v in values):
        raise ValueError(f"shapes background_rgb must be null or [r, g, b] in 0-255, got {rgb!r}")
    return values


def check_style(background: str, elongated: float, background_rgb=None) -> tuple[float, float, float] | None:
    """ValueError naming a background kind, colour or elongated share that the shapes do not take;
    returns the colour (`check_background_rgb`)."""
    check_background(background)
    if not 0.0 <= elongated <= 1.0:
        raise ValueError(f"shapes elongated (share of ellipses / rectangles) must be in [0, 1], got {elongated!r}")
    return check_background_rgb(background_rgb)


def _shape_masks(
    rng: np.random.Generator, height: int, width: int, scale: float,
    object_size: tuple[float, float] = OBJECT_SIZE, rotate: bool = True, elongated: float = 0.5,
) -> tuple[tuple[slice, slice], dict[str, np.ndarray], np.ndarray]:
    """A random shape inside the image: (window, {domain: bool mask in it}, float32 shading in it).

    Both domains' masks come from the same draws: A's disc or ellipse is inscribed in B's square or
    rectangle of the same centre, extents and rotation (0 unless `rotate`).
    """
    size = min(height, width)
    half_a = rng.uniform(*object_size) * size * scale
    square = rng.random() < 1.0 - elongated  # disc resp. square; otherwise ellipse resp. rectangle
    half_b = half_a if square else half_a * rng.uniform(0.45, 0.8)
    angle = rng.uniform(0, np.pi) if rotate else 0.0
    reach = min(np.hypot(half_a, half_b) + 1.0, size / 2.0 - 1.0)  # bounds the rotated shape
    cy = rng.uniform(reach, height - reach)
    cx = rng.uniform(reach, width - reach)
    window = (
        slice(int(cy - reach), min(int(np.ceil(cy + reach)) + 1, height)),
        slice(int(cx - reach), min(int(np.ceil(cx + reach)) + 1, width)),
    )
    yy, xx = np.ogrid[window]
    u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
    v = (yy - cy) * np.cos(angle) - (xx - cx) * np.sin(angle)
    masks = {"A": (u / half_a) ** 2 + (v / half_b) ** 2 <= 1.0, "B": (np.abs(u) <= half_a) & (np.abs(v) <= half_b)}
    shading = (0.8 + 0.2 * np.clip(u / half_a, -1.0, 1.0)).astype(np.float32)
    return window, masks, shading


def shapes_record(
    domain: str,
    index: int,
    seed: int = 0,
    height: int = 200,
    width: int = 200,
    max_instances: int = 6,
    object_size: tuple[float, float] = OBJECT_SIZE,
    paired: bool = False,
    background: str = "textured",
    rotate: bool = True,
    elongated: float = 0.5,
    background_rgb: tuple[float, float, float] | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """One image of the shapes data set: (RGB uint8 (H, W, 3), [bool (H, W) mask per instance]).

    Deterministic in its arguments; 1 to `max_instances` instances that do not overlap, each of a
    half extent drawn from `object_size` (fractions of min(height, width); shrunk if it does not fit).
    `paired`: records A and B of one index share background, positions, sizes, rotations and colours
    and differ only in the shapes (drawn from a generator common to both domains). `background`,
    `rotate`, `elongated`, `background_rgb`: the module doc.
    """
    if height < 16 or width < 16:
        raise ValueError(f"shapes images must be at least 16x16, got {height}x{width}")
    check_object_size(object_size)
    rgb = check_style(background, elongated, background_rgb)
    rng = np.random.default_rng([seed, _PAIRED_CODE if paired else _domain_code(domain), index])
    image = _background(rng, height, width, background, rgb)
    count = int(rng.integers(1, max_instances + 1))
    taken = np.zeros((height, width), dtype=bool)
    masks: list[np.ndarray] = []
    for _ in range(count):
        for attempt in range(_PLACEMENT_TRIES):
            scale = 1.0 - attempt / (2 * _PLACEMENT_TRIES)
            window, local_masks, shading = _shape_masks(rng, height, width, scale, object_size, rotate, elongated)
            local = local_masks[domain]
            footprint = local_masks["A"] | local_masks["B"] if paired else local
            if local.any() and not (footprint & taken[window]).any():
                break
        else:
            continue
        colour = np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.55, 1.0), rng.uniform(0.6, 1.0)),
                          dtype=np.float32)
        image[window][local] = shading[local][:, None] * colour
        mask = np.zeros((height, width), dtype=bool)
        mask[window] = local
        occupied = np.zeros((height, width), dtype=bool)
        occupied[window] = footprint
        taken |= _dilate(occupied)
        masks.append(mask)
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), masks


def _dilate(mask: np.ndarray) -> np.ndarray:
    """Mask grown by 2 pixels (a 5x5 square), so that objects keep a visible gap."""
    grown = mask.copy()
    for shift in (1, 2):
        grown[shift:] |= mask[:-shift]
        grown[:-shift] |= mask[shift:]
    rows = grown.copy()
    for shift in (1, 2):
        grown[:, shift:] |= rows[:, :-shift]
        grown[:, :-shift] |= rows[:, shift:]
    return grown


class ShapesSource:
    """`size` records of one shapes domain as a random-access source of `Record`s."""

    def __init__(
        self,
        domain: str,
        size: int = 1000,
        seed: int = 0,
        height: int = 200,
        width: int = 200,
        max_instances: int = 6,
        object_size: tuple[float, float] = OBJECT_SIZE,
        paired: bool = False,
        background: str = "textured",
        rotate: bool = True,
        elongated: float = 0.5,
        background_rgb: tuple[float, float, float] | None = None,
    ):
        _domain_code(domain)
        if size < 1:
            raise ValueError(f"shapes domain {domain} must have at least one record, got size={size}")
        self.background_rgb = check_style(background, elongated, background_rgb)
        self.domain, self.size, self.seed = domain, size, seed
        self.height, self.width, self.max_instances = height, width, max_instances
        self.object_size = check_object_size(object_size)
        self.paired = paired
        self.background, self.rotate, self.elongated = background, bool(rotate), float(elongated)

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of every record, known from the options (`transforms.check_crop_fits`)."""
        return self.height, self.width

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Record:
        if not 0 <= index < self.size:
            raise IndexError(f"shapes index {index} out of range [0, {self.size})")
        image, masks = shapes_record(self.domain, index, self.seed, self.height, self.width, self.max_instances,
                                     self.object_size, self.paired, self.background, self.rotate, self.elongated,
                                     self.background_rgb)
        return Record(image=image, masks=[m.astype(np.uint8) * 255 for m in masks],
                      id=f"shapes{self.domain}_{index:06d}")

    def __repr__(self) -> str:
        return (f"ShapesSource({self.domain!r}, size={self.size}, seed={self.seed}, {self.height}x{self.width}, "
                f"object_size={self.object_size}, background={self.background!r}, rotate={self.rotate}, "
                f"elongated={self.elongated}, background_rgb={self.background_rgb}{', paired' if self.paired else ''})")


def rectangularity(mask: np.ndarray) -> float:
    """Area of a mask over the area of its smallest bounding rectangle (any orientation).

    About 1 for squares and rectangles, about pi/4 = 0.785 for discs and ellipses: a translated
    mask can be scored by which of the two it is closer to. An empty mask gives 0.
    """
    ys, xs = np.nonzero(np.asarray(mask))
    if ys.size == 0:
        return 0.0
    angles = np.linspace(0.0, np.pi / 2, 90, endpoint=False)
    cos, sin = np.cos(angles)[:, None], np.sin(angles)[:, None]
    u = xs[None] * cos + ys[None] * sin  # (angles, pixels)
    v = ys[None] * cos - xs[None] * sin
    # a pixel is a unit square: its extent along a rotated axis is |cos| + |sin|
    pad = (np.abs(cos) + np.abs(sin))[:, 0]
    areas = (np.ptp(u, axis=1) + pad) * (np.ptp(v, axis=1) + pad)
    return float(ys.size / areas.min())
