"""Preparation of raw public data sets (COCO, CCP, LV-MHP v1) and of the shapes data set into
encoded records per split, ready for `write_folder` or a TFDS build."""
