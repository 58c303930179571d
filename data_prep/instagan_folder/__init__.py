"""TFDS builder `instagan_folder`: a reference-layout folder as a TFDS data set (see the builder module)."""

from data_prep.instagan_folder.instagan_folder_dataset_builder import (
    Builder,
    FolderConfig,
    folder_config,
)

__all__ = ["Builder", "FolderConfig", "folder_config"]
