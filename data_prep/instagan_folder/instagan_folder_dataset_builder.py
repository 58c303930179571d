"""TFDS builder `instagan_folder`: any folder in the reference layout (`manual_dir`), e.g. the
output of the CCP, MHP or shapes recipes, as ArrayRecord files, without TensorFlow.

Every `<phase><A|B>` folder with a `_seg` folder beside it becomes a split of that name. Images
and masks are decoded and checked while building, so a bad file is named here. Name the config
after the task, e.g. `folder_config('ccp_jeans_skirt')`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tensorflow_datasets as tfds

from instagan_jax.data import tfds_data
from instagan_jax.data.errors import DataError, SkipLog
from instagan_jax.data.folder import FolderSource
from instagan_jax.data.imageio import encode_png, is_rgb_file
from instagan_jax.data.records import EncodedRecord

_KEPT_AS_IS = {".png", ".jpg", ".jpeg"}


@dataclasses.dataclass
class FolderConfig(tfds.core.BuilderConfig):
    """Name the task (see `folder_config`)."""


def split_folders(root: Path) -> list[tuple[str, str]]:
    """(phase, domain) of every `<phase><A|B>` folder of `root` that has its `_seg` folder."""
    found = []
    for path in sorted(root.iterdir()):
        match = re.fullmatch(r"(\w+)([AB])", path.name)
        if match and path.is_dir() and (root / f"{path.name}_seg").is_dir():
            found.append((match.group(1), match.group(2)))
    if not found:
        raise DataError(f"no <phase>A / <phase>A_seg folders in {root}")
    return found


class Builder(tfds.core.GeneratorBasedBuilder):
    """A reference-layout folder for InstaGAN."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [FolderConfig(name="default", description="A folder in the reference layout.")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = "manual_dir is the folder with trainA/, trainA_seg/, trainB/, ..."

    def __init__(self, *, skips: SkipLog | None = None, **kwargs: Any):
        """skips: the bad-record policy (default: fail on the first unreadable record)."""
        super().__init__(**kwargs)
        self.skips = SkipLog() if skips is None else skips

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Images with one mask per instance, in two domains, for InstaGAN.",
            features=tfds_data.features(),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
        root = Path(dl_manager.manual_dir)
        return {
            f"{phase}{domain}": self._generate_examples(FolderSource(root, phase, domain))
            for phase, domain in split_folders(root)
        }

    def _generate_examples(self, source: FolderSource) -> Iterator[tuple[str, dict[str, Any]]]:
        for index, (name, image_path, _) in enumerate(source.entries):
            try:
                record = source[index]
            except DataError as err:
                self.skips.handle(str(err))
                continue
            suffix = image_path.suffix.lower()
            if suffix in _KEPT_AS_IS and is_rgb_file(image_path):  # the file's bytes as they are
                image = image_path.read_bytes()
            else:
                image, suffix = encode_png(record.image), ".png"
            encoded = EncodedRecord(name, image, suffix, [encode_png(m) for m in record.masks])
            yield name, tfds_data.to_example(encoded)


def folder_config(name: str) -> FolderConfig:
    """The config called `name`: the registered one if there is one (TFDS accepts no other config
    of a registered name), else a new one."""
    return Builder.builder_configs.get(name) or FolderConfig(name=name, description=f"The {name} folder.")
