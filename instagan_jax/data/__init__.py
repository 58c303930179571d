"""Input pipeline: sources (reference folder layout, COCO, TFDS, built-in shapes), per-record
transforms, and a grain loader of unpaired A/B batches with a resumable state.

    from instagan_jax import data
    a, b = data.open_sources("shapes", size=1000, height=220, width=220)
    loader = data.PairLoader(a, b, batch_size=4, transform=data.TransformConfig(ins_max=4), seed=0)
    batch = next(loader)          # img_A (B,H,W,3), masks_A (B,K,H,W,1), valid_A (B,K), id_A, ... B
    state = loader.get_state()    # JSON-serialisable; loader.set_state(state) resumes exactly

Paired methods (pix2pix) read aligned pairs: `data.PairedLoader(data.open_paired(kind, **options), ...)`
yields img_A (input) and img_B (target) cropped and flipped alike (`data.paired`).

Attribute methods (LOMIT) read labelled images: `data.AttributeLoader(data.open_attributes(kind, **options), ...)`
yields img, labels (B,C) 0/1 and the true object mask where known (`data.attributes`).
"""

from instagan_jax.data.attributes import (
    AttributeLoader,
    AttributeRecord,
    AttributeShapesSource,
    AttributeSource,
    CelebASource,
    attribute_shapes_record,
    open_attributes,
    transform_example,
)
from instagan_jax.data.coco import CocoSource, ann_to_mask, coco_sources, load_coco
from instagan_jax.data.errors import DataError, SkipLog
from instagan_jax.data.folder import FolderSource, scan_domain, write_folder
from instagan_jax.data.paired import (
    AlignedSource,
    PairedLoader,
    PairSource,
    ZippedPairs,
    transform_pair,
)
from instagan_jax.data.pipeline import PairLoader, stack_batch
from instagan_jax.data.records import EncodedRecord, Record, RecordSource
from instagan_jax.data.shapes import ShapesSource, rectangularity, shapes_record
from instagan_jax.data.sources import open_paired, open_sources
from instagan_jax.data.transforms import TransformConfig, check_crop_fits, check_has_masks, transform_record

__all__ = [
    "AlignedSource", "AttributeLoader", "AttributeRecord", "AttributeShapesSource", "AttributeSource",
    "CelebASource", "CocoSource", "DataError", "EncodedRecord", "FolderSource", "PairLoader", "PairSource",
    "PairedLoader", "Record", "RecordSource", "ShapesSource", "SkipLog", "TransformConfig", "ZippedPairs",
    "ann_to_mask", "attribute_shapes_record", "check_crop_fits", "check_has_masks", "coco_sources", "load_coco", "open_attributes", "open_paired",
    "open_sources", "rectangularity", "scan_domain", "shapes_record", "stack_batch", "transform_example",
    "transform_pair", "transform_record", "write_folder",
]
