"""The grain pipeline: batch layout, unpaired sampling, epochs, determinism, resume, bad records."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from data_helpers import box_mask, random_image, save

from instagan_jax.data import (
    DataError,
    FolderSource,
    PairLoader,
    Record,
    ShapesSource,
    TransformConfig,
)

SMALL = TransformConfig(load_size=(36, 36), crop_size=(32, 32), ins_max=3)


def _shapes(size_a=10, size_b=7):
    return tuple(ShapesSource(d, n, seed=0, height=36, width=36) for d, n in (("A", size_a), ("B", size_b)))


def _take(loader, n):
    return [next(loader) for _ in range(n)]


def _same(batches_1, batches_2):
    pairs = list(zip(batches_1, batches_2))
    return len(batches_1) == len(batches_2) and all(np.array_equal(a[k], b[k]) for a, b in pairs for k in a)


def test_batch_layout():
    with PairLoader(*_shapes(), batch_size=3, transform=SMALL, seed=0) as loader:
        batch = next(loader)
    assert sorted(batch) == ["id_A", "id_B", "img_A", "img_B", "masks_A", "masks_B", "valid_A", "valid_B"]
    for d in "AB":
        assert batch[f"img_{d}"].shape == (3, 32, 32, 3) and batch[f"img_{d}"].dtype == np.float32
        assert batch[f"masks_{d}"].shape == (3, 3, 32, 32, 1) and batch[f"masks_{d}"].dtype == np.float32
        assert batch[f"valid_{d}"].shape == (3, 3) and batch[f"valid_{d}"].dtype == bool
        assert batch[f"id_{d}"].shape == (3,) and batch[f"id_{d}"][0].startswith(f"shapes{d}_")
        assert -1 <= batch[f"img_{d}"].min() and batch[f"img_{d}"].max() <= 1
        masks, valid = batch[f"masks_{d}"], batch[f"valid_{d}"]
        np.testing.assert_array_equal(valid, (masks > -1).any(axis=(2, 3, 4)))
        assert valid[:, 0].all()  # every shapes image has an instance


class _Indexed:
    """A source whose records carry their index in the id (and in the image)."""

    def __init__(self, size, prefix):
        self.size, self.prefix = size, prefix

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        return Record(np.full((4, 4, 3), index, np.uint8), [box_mask(4, 4, 0, 0, 2, 2)], f"{self.prefix}{index}")


def _ids(batches, domain):
    return [int(i[1:]) for b in batches for i in b[f"id_{domain}"]]


def test_unpaired_sampling_and_epochs():
    cfg = TransformConfig(load_size=None, crop_size=None, ins_max=1)
    loader = PairLoader(_Indexed(12, "a"), _Indexed(5, "b"), batch_size=4, transform=cfg, seed=1)
    assert loader.epoch_length == 12
    batches = _take(loader, 6)  # two epochs
    a_ids, b_ids = _ids(batches, "A"), _ids(batches, "B")
    assert sorted(a_ids[:12]) == list(range(12)) and sorted(a_ids[12:]) == list(range(12))
    assert a_ids[:12] != a_ids[12:] and a_ids[:12] != list(range(12))  # shuffled, differently per epoch
    assert set(b_ids) <= set(range(5)) and len(set(b_ids)) == 5
    # the longer domain sets the epoch: |B| > |A| cycles A within an epoch
    swapped = PairLoader(_Indexed(3, "a"), _Indexed(9, "b"), batch_size=9, transform=cfg, seed=1)
    assert swapped.epoch_length == 9 and sorted(_ids(_take(swapped, 1), "A")) == sorted(list(range(3)) * 3)
    ordered = PairLoader(_Indexed(12, "a"), _Indexed(5, "b"), batch_size=4, transform=cfg, shuffle=False)
    assert _ids(_take(ordered, 3), "A") == list(range(12))
    finite = PairLoader(_Indexed(12, "a"), _Indexed(5, "b"), batch_size=5, transform=cfg, num_epochs=1)
    assert len(list(finite)) == 2  # 12 records, remainder dropped


def test_deterministic_given_the_seed():
    runs = [_take(PairLoader(*_shapes(), batch_size=2, transform=SMALL, seed=5), 4) for _ in range(2)]
    assert _same(*runs)
    other = _take(PairLoader(*_shapes(), batch_size=2, transform=SMALL, seed=6), 4)
    assert not _same(runs[0], other)
    single = _take(PairLoader(*_shapes(), batch_size=2, transform=SMALL, seed=5, num_threads=0), 4)
    assert _same(runs[0], single)


def test_resume_from_saved_state():
    loader = PairLoader(*_shapes(), batch_size=2, transform=SMALL, seed=3)
    _take(loader, 5)
    state = json.loads(json.dumps(loader.get_state()))
    expected = _take(loader, 6)  # crosses the epoch boundary (10 records = 5 batches)
    loader.close()
    resumed = PairLoader(*_shapes(), batch_size=2, transform=SMALL, seed=3)
    resumed.set_state(state)
    assert _same(expected, _take(resumed, 6))
    other = PairLoader(*_shapes(), batch_size=4, transform=SMALL, seed=3)
    with pytest.raises(ValueError, match="different pipeline.*batch_size"):
        other.set_state(state)


def test_worker_processes_give_the_same_batches():
    reference = _take(PairLoader(*_shapes(), batch_size=2, transform=SMALL, seed=2), 5)
    with PairLoader(*_shapes(), batch_size=2, transform=SMALL, seed=2, num_workers=2) as loader:
        first = _take(loader, 3)
        state = loader.get_state()
    with PairLoader(*_shapes(), batch_size=2, transform=SMALL, seed=2, num_workers=2) as loader:
        loader.set_state(state)
        rest = _take(loader, 2)
    assert _same(reference, first + rest)


def test_shards_are_disjoint():
    cfg = TransformConfig(load_size=None, crop_size=None, ins_max=1)
    shards = [PairLoader(_Indexed(12, "a"), _Indexed(5, "b"), batch_size=3, transform=cfg, seed=0,
                         shard_index=i, shard_count=2) for i in range(2)]
    ids = [_ids(_take(s, 2), "A") for s in shards]
    assert sorted(ids[0] + ids[1]) == list(range(12))


def _indexed_loader(batch_size, shard_index=0, shard_count=1, num_epochs=None):
    cfg = TransformConfig(load_size=None, crop_size=None, ins_max=1)
    return PairLoader(_Indexed(12, "a"), _Indexed(5, "b"), batch_size=batch_size, transform=cfg, seed=4,
                      shard_index=shard_index, shard_count=shard_count, num_epochs=num_epochs)


def test_shards_put_together_are_the_global_batches_and_resume_on_another_process_count():
    whole = _take(_indexed_loader(4), 5)
    shards = [_indexed_loader(2, i, 2) for i in range(2)]
    for step in range(3):
        parts = [next(s) for s in shards]
        assert [_ids(parts, d) for d in "AB"] == [_ids([whole[step]], d) for d in "AB"]
    state = json.loads(json.dumps(shards[0].get_state()))
    single = _indexed_loader(4)
    single.set_state(state)  # saved by 2 processes, resumed by 1: the same global batch of 4
    assert _same(whole[3:], _take(single, 2))
    with pytest.raises(ValueError, match=r"different pipeline.*'global_batch_size': \(4, 2\)"):
        _indexed_loader(2).set_state(state)
    # 12 records, global batches of 8: one, on 1 process and on each of 2 (never 2 batches on one of them)
    assert [len(list(_indexed_loader(4, i, 2, num_epochs=1))) for i in range(2)] == [1, 1]
    assert len(list(_indexed_loader(8, num_epochs=1))) == 1


@pytest.fixture
def folder_with_bad_files(tmp_path):
    rng = np.random.default_rng(0)
    for d in "AB":
        for i in range(4):
            save(tmp_path / f"train{d}" / f"{i}.png", random_image(rng, 10, 10))
            save(tmp_path / f"train{d}_seg" / f"{i}_0.png", box_mask(10, 10, 0, 0, 5, 5))
    (tmp_path / "trainA" / "2.png").write_bytes(b"broken")
    save(tmp_path / "trainB_seg" / "1_0.png", box_mask(9, 10, 0, 0, 5, 5))
    return tmp_path


def test_bad_records_raise_naming_the_file(folder_with_bad_files):
    cfg = TransformConfig(load_size=None, crop_size=None, ins_max=2)
    sources = [FolderSource(folder_with_bad_files, "train", d) for d in "AB"]
    loader = PairLoader(*sources, batch_size=4, transform=cfg, seed=0, shuffle=False)
    with pytest.raises(DataError, match=r"trainA.2\.png|trainB_seg.1_0\.png"):
        _take(loader, 1)
    loader.close()


def test_skip_bad_skips_counts_and_logs(folder_with_bad_files, caplog):
    cfg = TransformConfig(load_size=None, crop_size=None, ins_max=2)
    sources = [FolderSource(folder_with_bad_files, "train", d) for d in "AB"]
    with caplog.at_level(logging.WARNING), PairLoader(*sources, batch_size=4, transform=cfg, seed=0,
                                                      skip_bad=True) as loader:
        batches = _take(loader, 4)  # 4 epochs
        state = loader.get_state()
    a_ids = [i for b in batches for i in b["id_A"]]
    b_ids = [i for b in batches for i in b["id_B"]]
    assert "2" not in a_ids and "1" not in b_ids and len(a_ids) == 16
    assert loader.skips.count >= 4 and state["skipped"] == loader.skips.count  # A's bad file, every epoch
    assert "2.png" in caplog.text and "1_0.png" in caplog.text
    assert caplog.text.count("skipping bad record: domain A") == 1  # logged once


def test_empty_domain_and_mixed_sizes():
    cfg = TransformConfig(load_size=None, crop_size=None, ins_max=1)
    with pytest.raises(DataError, match="domain B has no records"):
        PairLoader(_Indexed(3, "a"), _Indexed(0, "b"), batch_size=1, transform=cfg)
    sizes = ShapesSource("A", 4, height=20, width=20), ShapesSource("B", 4, height=24, width=20)
    mixed = PairLoader(sizes[0], ShapesSource("A", 4, height=24, width=20), batch_size=2, transform=cfg)
    assert next(mixed)["img_A"].shape == (2, 20, 20, 3)
    ragged = PairLoader(_Ragged(), sizes[1], batch_size=2, transform=cfg, shuffle=False)
    with pytest.raises(DataError, match="cannot batch img_A of different shapes"):
        next(ragged)


class _Ragged(_Indexed):
    def __init__(self):
        super().__init__(2, "r")

    def __getitem__(self, index):
        size = 4 + index
        return Record(np.zeros((size, size, 3), np.uint8), [], f"r{index}")
