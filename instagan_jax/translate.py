"""`instagan translate`: translate images (and, for InstaGAN, their instance masks) with a trained run.

Every input is read once up front (a missing or corrupt file, or a mask whose size differs from its
image, is named before the model loads). Each image is then resized to the network's size and
translated by the run's method's one inference path (`Method.translator`, the same as `instagan eval`'s),
its masks ordered largest first; a method that translates masks (InstaGAN) returns them, the others
the image alone. The outputs are resized back to the image's size. In `out`:

    images/NAME.png            translated image
    images_seg/NAME_<i>.png    translated mask of input instance i (0/255), so `out` is itself in the
                               reference layout and `instagan translate out/images` works (InstaGAN)
    merged/NAME.png            union of the translated masks (InstaGAN)
    side_by_side/NAME.png      input | input masks | output | output masks (InstaGAN); input | output
    index.html                 a gallery of the whole run
"""

from __future__ import annotations

import dataclasses
import html
import logging
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np

from instagan_jax.data.inputs import (
    Entry,
    detection_entries,
    folder_entries,
    image_entries,
    layout_entries,
)
from instagan_jax.data.transforms import (
    order_by_area,
    resize,
    resize_mask,
    to_unit_range,
)
from instagan_jax.visuals import (
    check_writable_location,
    join_tiles,
    save_png,
    to_uint8,
    write_text,
)

log = logging.getLogger(__name__)

RESIZE_FILTER = "bicubic"  # the training pipeline's default for images and masks
GALLERY_COLUMNS = ("image", "instances", "input | input masks | output | output masks", "files")


@dataclasses.dataclass(frozen=True)
class Written:
    """The files written for one image, and its number of instances."""

    name: str
    instances: int
    image: Path
    masks: tuple[Path, ...]
    merged: Path | None  # None for a method without masks
    side_by_side: Path


@dataclasses.dataclass(frozen=True)
class Summary:
    """What a translation run did."""

    images: int
    instances: int
    without_instances: int  # images with masks of none (InstaGAN); 0 for a method without masks
    seconds: float
    gallery: Path
    masks: bool = True  # whether the method translated masks

    def line(self) -> str:
        """The command's final summary line."""
        alone = f"; {self.without_instances} without instances, translated alone" if self.without_instances else ""
        what = f" with {self.instances} instance(s)" if self.masks else ""
        return f"translated {self.images} image(s){what} in {self.seconds:.1f} s{alone}; gallery: {self.gallery}"


def gather_entries(inputs: str | Path, direction: str, *, masks: str | Path | None = None,
                   detections: str | Path | None = None, category: str | None = None,
                   min_score: float = 0.5, image_info: str | Path | None = None,
                   with_masks: bool = True) -> list[Entry]:
    """The images to translate: `inputs` with masks in a folder (`masks`), from a COCO results file
    (`detections`, `category`, `min_score`, `image_info`), or else in the reference layout; without
    masks (`with_masks` false, a method that translates images alone) every image of `inputs`."""
    if not with_masks:
        given = [flag for flag, value in (("--masks", masks), ("--detections", detections), ("--category", category),
                                          ("--image-info", image_info)) if value is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: this run's method translates images alone (no instance masks)")
        return image_entries(inputs, direction)
    if masks is not None and detections is not None:
        raise ValueError("give masks either as a folder (--masks) or as COCO results (--detections), not both")
    if detections is not None:
        if category is None:
            raise ValueError("--detections needs --category (a category id, or a name with --image-info)")
        return detection_entries(inputs, detections, category, min_score=min_score, image_info=image_info)
    if category is not None or image_info is not None:
        raise ValueError("--category and --image-info go with --detections")
    if masks is not None:
        return folder_entries(inputs, masks)
    return layout_entries(inputs, direction)


def check_entries(entries: list[Entry], user_mask: tuple[Path, np.ndarray] | None = None) -> int:
    """Decode every image and mask once (errors name the file); returns the number of instances. A mask
    with no pixel set is still an instance slot (the reference's too), with one warning naming it; so is
    a `user_mask` (its file and array) of another size than an image, which is resized to it."""
    instances = 0
    for entry in entries:
        image, masks = entry.read()
        instances += len(masks)
        if user_mask is not None and user_mask[1].shape != image.shape[:2]:
            log.warning("--user-mask %s is %dx%d but %s is %dx%d: the mask is resized to it", user_mask[0],
                        *user_mask[1].shape, entry.image, *image.shape[:2])
        for mask, source in zip(masks, entry.masks):
            if not mask.any():
                where = getattr(source, "path", None) or f"detection {source.index} of {source.results}"
                log.warning("mask %s of %s is empty (all zero): it is translated as an instance with no pixel",
                            where, entry.image)
    return instances


def check_out(out: str | Path) -> Path:
    """`out` if a translation may be written there: missing, or an empty folder whose nearest existing
    folder is writable. ValueError otherwise, before any network loads: a translation never mixes with the
    files of another one (docs/TRAINING.md, "Output folders")."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    if out.is_dir() and (held := sorted(p.name for p in out.iterdir())):
        shown = ", ".join(held[:4]) + (", ..." if len(held) > 4 else "")
        raise ValueError(f"--out {out} already holds {len(held)} entries ({shown}): translations are never mixed; "
                         "remove it or choose another --out")
    check_writable_location(out, "--out")
    return out


def to_network(image: np.ndarray, masks: list[np.ndarray], size: tuple[int, int]):
    """Image (1,H,W,3) and masks (1,K,H,W,1) in [-1, 1] at `size`, masks largest first (as in
    training: area after resizing, stable), and that order (input index of each slot)."""
    resized = [resize_mask(mask, size, RESIZE_FILTER) for mask in masks]
    order = order_by_area(resized)
    slots = np.asarray([to_unit_range(resized[i]) for i in order], np.float32)
    return to_unit_range(resize(image, size, RESIZE_FILTER))[None], slots.reshape((1, len(order), *size, 1)), order


def from_network(fake_img, fake_masks, order: np.ndarray, shape: tuple[int, int]):
    """The translated image (H,W,3) uint8 at `shape` and its masks, 0/255 (H,W), in input order
    (none when `fake_masks` is None)."""
    image = resize(to_uint8(np.asarray(fake_img)[0]), shape, RESIZE_FILTER)
    if fake_masks is None:
        return image, []
    masks = [None] * len(order)
    for slot, index in enumerate(order):
        soft = resize_mask(to_uint8(np.asarray(fake_masks)[0, slot])[..., 0], shape, RESIZE_FILTER)
        masks[index] = np.where(soft >= 128, 255, 0).astype(np.uint8)
    return image, masks


def union(masks: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Pixel-wise maximum of uint8 (H,W) masks as a grey RGB image (black where there is none)."""
    merged = np.max(masks, axis=0) if masks else np.zeros(shape, np.uint8)
    return np.repeat(merged[..., None], 3, axis=-1)


def write_outputs(out: Path, name: str, image: np.ndarray, masks: list[np.ndarray],
                  fake_image: np.ndarray, fake_masks: list[np.ndarray] | None) -> Written:
    """Write one image's PNGs (see the module doc), each atomically; `fake_masks` None: image alone."""
    if fake_masks is None:
        return Written(name, 0, save_png(fake_image, out / "images" / f"{name}.png"), (), None,
                       save_png(join_tiles([image, fake_image]), out / "side_by_side" / f"{name}.png"))
    shape = image.shape[:2]
    merged = union(fake_masks, shape)
    tiles = [image, union(masks, shape), fake_image, merged]
    return Written(
        name, len(masks),
        save_png(fake_image, out / "images" / f"{name}.png"),
        tuple(save_png(mask, out / "images_seg" / f"{name}_{i}.png") for i, mask in enumerate(fake_masks)),
        save_png(merged[..., 0], out / "merged" / f"{name}.png"),
        save_png(join_tiles(tiles), out / "side_by_side" / f"{name}.png"),
    )


def _link(path: Path, out: Path, text: str) -> str:
    return f'<a href="{quote(path.relative_to(out).as_posix())}">{html.escape(text)}</a>'


def gallery_html(written: list[Written], out: Path, title: str) -> str:
    """An HTML page with one row per image; every link is relative to `out`."""
    rows = []
    for item in written:
        side = quote(item.side_by_side.relative_to(out).as_posix())
        files = [_link(item.image, out, "image")]
        files += [_link(item.merged, out, "merged mask")] if item.merged is not None else []
        files += [_link(path, out, f"mask {i}") for i, path in enumerate(item.masks)]
        count = str(item.instances) if item.instances or item.merged is None else "0 (image translated alone)"
        thumbnail = f'<a href="{side}"><img src="{side}" alt="{html.escape(item.name)}"></a>'
        cells = [html.escape(item.name), count, thumbnail, " ".join(files)]
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    head = "".join(f"<th>{html.escape(column)}</th>" for column in GALLERY_COLUMNS)
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>\n"
            "<style>body{font-family:sans-serif} td,th{padding:4px;text-align:left;vertical-align:top} "
            "img{max-width:1024px}</style></head>\n"
            f"<body><h1>{html.escape(title)}</h1>\n<table>\n<tr>{head}</tr>\n" + "\n".join(rows)
            + "\n</table></body></html>\n")


def translate_entries(translate, entries: list[Entry], out: str | Path, *, size: tuple[int, int],
                      dtype: str = "float32", title: str = "instagan translate", progress: bool = True) -> Summary:
    """Translate every entry with `translate` (a `methods.Translator`, see the module doc) and write the gallery."""
    from tqdm import tqdm

    from instagan_jax.nn.build import x64_scope

    out, start, written = Path(out).resolve(), time.perf_counter(), []
    with x64_scope(dtype):
        for entry in tqdm(entries, desc="translate", unit="image", disable=not progress):
            image, masks = entry.read()
            img, slots, order = to_network(image, masks, size)
            fake_img, fake_masks = translate(img.astype(dtype), slots.astype(dtype))
            fake_image, fake_mask_list = from_network(fake_img, fake_masks, order, image.shape[:2])
            written.append(write_outputs(out, entry.name, image, masks, fake_image,
                                         None if fake_masks is None else fake_mask_list))
    gallery = write_text(out / "index.html", gallery_html(written, out, title))
    masks = any(w.merged is not None for w in written)
    return Summary(len(written), sum(w.instances for w in written),
                   sum(not w.instances for w in written) if masks else 0, time.perf_counter() - start, gallery, masks)
