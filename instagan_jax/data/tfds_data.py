"""TFDS side of the pipeline without TensorFlow: the shared feature spec, example encoding,
building a data set, and `TfdsSource`, which reads a split back through `tfds.data_source`.

Every data set stores one record per example: `image` (PNG or JPEG bytes), `masks` (a sequence
of PNG masks) and `id`; its splits are the domains, e.g. `trainA`, `trainB`, `valA`, `valB`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from instagan_jax.data.errors import DataError
from instagan_jax.data.records import EncodedRecord, Record


def features() -> Any:
    """The `tfds.features.FeaturesDict` of every instagan data set."""
    import tensorflow_datasets as tfds

    return tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3)),
        "masks": tfds.features.Sequence(tfds.features.Image(shape=(None, None, 1), encoding_format="png")),
        "id": tfds.features.Text(),
    })


def to_example(record: EncodedRecord) -> dict[str, Any]:
    """The TFDS example of an encoded record (bytes in, never arrays: no TensorFlow needed)."""
    return {"image": record.image, "masks": list(record.masks), "id": record.id}


def build(builder: Any, manual_dir: str | os.PathLike) -> None:
    """Run `builder.download_and_prepare` as ArrayRecord files, reading raw data from `manual_dir`."""
    import tensorflow_datasets as tfds

    if not Path(manual_dir).is_dir():
        raise DataError(f"manual_dir {manual_dir} does not exist")
    config = tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir))
    builder.download_and_prepare(file_format="array_record", download_config=config)


def prepare_command(name: str, data_dir: str | os.PathLike) -> str:
    """The `instagan prepare` command that builds TFDS data set `name` (builder/config[:version])."""
    builder, _, config = name.split(":")[0].partition("/")
    if builder == "instagan_coco" and config.count("_") == 1:
        cat_a, cat_b = config.split("_")
        return f"instagan prepare coco --root COCO --cat-a {cat_a} --cat-b {cat_b} --out {data_dir}"
    return f"instagan prepare ... --format tfds --out {data_dir}"


def check_prepared(name: str, data_dir: str | os.PathLike | None) -> None:
    """DataError naming the command that makes it where no version of data set `name` was built under
    `data_dir` (None: $TFDS_DATA_DIR or ~/tensorflow_datasets, as TFDS reads)."""
    where = Path(data_dir if data_dir is not None else
                 os.environ.get("TFDS_DATA_DIR", Path.home() / "tensorflow_datasets")).expanduser()
    folder = where / name.split(":")[0]
    if not (folder.is_dir() and any(p.is_dir() for p in folder.iterdir())):
        raise DataError(f"no prepared TFDS data set {name!r} in {where} ({folder} holds no version): make it with "
                        f"`{prepare_command(name, where)}` (docs/DATA.md)")


class TfdsSource:
    """One split (= one domain) of a prepared instagan TFDS data set, as `Record`s.

    name: e.g. 'instagan_coco/sheep_giraffe' (version optional); data_dir: where it was built.
    """

    def __init__(self, name: str, split: str, data_dir: str | os.PathLike | None = None):
        import tensorflow_datasets as tfds

        self.name, self.split = name, split
        check_prepared(name, data_dir)
        try:
            builder = tfds.builder(name, data_dir=data_dir)
        except Exception as err:  # TFDS raises several unrelated types for "not there"; its first line says which
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise DataError(f"TFDS data set {name!r} not found in data_dir {data_dir}: {first}") from None
        splits = sorted(builder.info.splits.keys())
        if split not in splits:
            raise DataError(f"TFDS data set {name!r} has no split {split!r}; it has {splits}")
        self._source = builder.as_data_source(split=split)

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> Record:
        try:
            example = self._source[index]
        except Exception as err:  # decoding errors of any kind: name the record
            raise DataError(f"TFDS {self.name} split {self.split}: cannot read example {index}: {err!r}") from err
        record_id = example["id"].decode() if isinstance(example["id"], bytes) else str(example["id"])
        masks = [np.asarray(m)[..., 0] for m in example["masks"]]
        return Record(image=np.asarray(example["image"]), masks=masks, id=record_id,
                      origin=f"TFDS {self.name} split {self.split} example {index}")

    def __repr__(self) -> str:
        return f"TfdsSource({self.name!r}, {self.split!r}, {len(self)} records)"
