"""Entry points from a data config to the two domain sources (`open_sources`) or to the aligned pairs
of a paired method (`open_paired`); `open_data` opens a config's data as a method's data kind reads it."""

from __future__ import annotations

import os
from typing import Any

from instagan_jax.data.options import no_more, required, taken_by
from instagan_jax.data.records import RecordSource


def open_sources(kind: str, **options: Any) -> tuple[RecordSource, RecordSource]:
    """(source A, source B) of a data set described by `kind` and its options.

    kind 'shapes': size=1000, seed=0, height=200, width=200, max_instances=6, object_size=(0.06, 0.2),
    paired=False (True: records A and B of an index show the same scene with other shapes).
    kind 'folder': root, phase='train' (reference layout, `<root>/<phase>A`, ...).
    kind 'coco': annotations (instances json), images (folder), category_a, category_b, include_crowd=True.
    kind 'tfds': name (e.g. 'instagan_coco/sheep_giraffe'), data_dir=None, phase='train'.
    """
    if kind == "shapes":
        from instagan_jax.data.shapes import ShapesSource

        taken_by(ShapesSource, kind, options, besides=["domain"])
        return ShapesSource("A", **options), ShapesSource("B", **options)
    if kind == "folder":
        from instagan_jax.data.folder import FolderSource

        root, phase = required(options, "root"), options.pop("phase", "train")
        no_more(kind, options, ["root", "phase"])
        return FolderSource(root, phase, "A"), FolderSource(root, phase, "B")
    if kind == "coco":
        from instagan_jax.data.coco import coco_sources

        named = ["annotations", "images", "category_a", "category_b"]
        paths = [required(options, key) for key in named]
        taken_by(coco_sources, kind, options, also=named,
                 besides=["annotation_file", "image_dir", "category_a", "category_b"])
        return coco_sources(*paths, **options)
    if kind == "tfds":
        from instagan_jax.data.tfds_data import TfdsSource

        name, phase = required(options, "name"), options.pop("phase", "train")
        data_dir: str | os.PathLike | None = options.pop("data_dir", None)
        no_more(kind, options, ["name", "phase", "data_dir"])
        return TfdsSource(name, f"{phase}A", data_dir), TfdsSource(name, f"{phase}B", data_dir)
    if kind == "aligned":
        raise ValueError("data kind 'aligned' holds pairs: open it with open_paired (a paired method)")
    raise ValueError(f"unknown data kind {kind!r}: choose shapes, folder, coco or tfds")


def open_paired(kind: str, **options: Any):
    """The `PairSource` of aligned (A, B) records of a paired method's data config.

    kind 'aligned': root, phase='train' (the reference's `<root>/<phase>/` of A|B side-by-side images).
    kind 'shapes': paired=True (required) and the options of `open_sources('shapes')`.
    """
    from instagan_jax.data.paired import AlignedSource, ZippedPairs

    if kind == "aligned":
        root, phase = required(options, "root"), options.pop("phase", "train")
        no_more(kind, options, ["root", "phase"])
        return AlignedSource(root, phase)
    if kind == "shapes":
        if options.get("paired") is not True:
            raise ValueError("a paired method on data kind 'shapes' needs data option paired: true")
        return ZippedPairs(*open_sources(kind, **options))
    raise ValueError(f"data kind {kind!r} is not paired: choose aligned, or shapes with paired: true")


def open_data(d, kind: str = "sets"):
    """The sources of a `config.DataConfig` as a method of data kind `kind` reads them (`methods.base.DATA_KINDS`):
    (source A, source B) for "sets" and "images", one source of aligned pairs for "paired", of labelled
    images for "attributes"; ValueError naming an option the source does not take."""
    if kind == "attributes":
        from instagan_jax.data.attributes import open_attributes as opener
    else:
        opener = open_paired if kind == "paired" else open_sources
    try:
        return opener(d.kind, **dict(d.options))
    except TypeError as err:
        raise ValueError(f"data.options {dict(d.options)} for data.kind {d.kind!r}: {err}") from None
