"""The grain pipeline: unpaired A/B sampling, per-record augmentation, batching, resumable state.

Element `g` of the stream (g = 0, 1, ...; epoch e holds g in [e*N, (e+1)*N) with
N = max(|A|, |B|)) pairs A record `perm_e(g mod N) mod |A|` (a fresh permutation per epoch)
with a B record drawn uniformly at random, as the reference does; its crops and flips are
drawn from generators seeded by (seed, g). So every batch is a pure function of
(seed, sources, settings, batch number), whatever the number of threads or worker processes,
and the iterator state is just the number of batches served.

With `shard_count` n processes each serving `batch_size` b, shard p's batch i is elements
[i*n*b + p*b, i*n*b + (p+1)*b): the shards' batches i, put together in process order, are the
global batch i of n*b elements, whatever n. So a position saved by n processes can be resumed by
any number of processes that keeps the global batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grain
import numpy as np

from instagan_jax.data.errors import DataError, SkipLog
from instagan_jax.data.records import RecordSource
from instagan_jax.data.transforms import TransformConfig, transform_record

_STATE_VERSION = 1
_MAX_BAD_IN_A_ROW = 100


class _PairMaker:
    """Builds stream element g from its A position (picklable, so it can run in worker processes)."""

    def __init__(self, source_a: RecordSource, source_b: RecordSource, cfg: TransformConfig,
                 seed: int, skip_bad: bool):
        self.sources = {"A": source_a, "B": source_b}
        self.cfg, self.seed, self.skip_bad = cfg, seed, skip_bad

    def _load(self, domain: str, first: int, next_index: Callable[[int], int],
              rng: np.random.Generator, skipped: list[str]) -> dict[str, Any]:
        """Transformed record `first` of a domain; if bad and skipping, the ones `next_index` gives."""
        index = first
        for _ in range(_MAX_BAD_IN_A_ROW):
            try:
                return transform_record(self.sources[domain][index], self.cfg, rng)
            except DataError as err:
                if not self.skip_bad:
                    raise
                skipped.append(f"domain {domain}: {err}")
                index = next_index(index)
        raise DataError(f"domain {domain}: {_MAX_BAD_IN_A_ROW} bad records in a row, last: {skipped[-1]}")

    def __call__(self, g: int, a_position: int) -> dict[str, Any]:
        size_a, size_b = len(self.sources["A"]), len(self.sources["B"])
        pick_b = np.random.default_rng([self.seed, g, 0])
        skipped: list[str] = []
        a = self._load("A", a_position % size_a, lambda i: (i + 1) % size_a,
                       np.random.default_rng([self.seed, g, 1]), skipped)
        b = self._load("B", int(pick_b.integers(size_b)), lambda i: int(pick_b.integers(size_b)),
                       np.random.default_rng([self.seed, g, 2]), skipped)
        element = {f"{key}_{domain}": value for domain, ex in (("A", a), ("B", b)) for key, value in ex.items()}
        element["skipped"] = skipped
        return element


def _id_key(key: str) -> str:
    """The id entry of the record an array belongs to: 'img_A' -> 'id_A'; 'img', 'has_mask' -> 'id'."""
    domain = key.rpartition("_")[2]
    return f"id_{domain}" if domain in ("A", "B") else "id"


def stack_batch(elements: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack stream elements: arrays along a new batch axis, ids as a string array, skip lists joined."""
    batch: dict[str, Any] = {}
    for key in elements[0]:
        values = [e[key] for e in elements]
        if key == "skipped":
            batch[key] = [message for v in values for message in v]
        elif key == "id" or key.startswith("id_"):
            batch[key] = np.array(values, dtype=str)
        else:
            shapes = {np.shape(v) for v in values}
            if len(shapes) > 1:
                ids = [e[_id_key(key)] for e in elements]
                raise DataError(f"cannot batch {key} of different shapes {sorted(shapes)} (records {ids}); "
                                "set load_size or crop_size so that all records have one size")
            batch[key] = np.stack(values)
    return batch


class PairLoader:
    """Iterator over batches of unpaired A/B examples (see the module doc for the sampling).

    Each batch is a dict: `img_A` (B, H, W, 3) float32 in [-1, 1], `masks_A` (B, K, H, W, 1)
    float32 in [-1, 1] (-1 = background and empty slots), `valid_A` (B, K) bool, `id_A` (B,)
    str, and the same for B. `get_state()` / `set_state()` save and restore the position as a
    JSON-serialisable dict. Use `close()` (or `with`) to stop worker processes.
    """

    def __init__(
        self,
        source_a: RecordSource,
        source_b: RecordSource,
        *,
        batch_size: int,
        transform: TransformConfig | None = None,
        seed: int = 0,
        shuffle: bool = True,
        num_epochs: int | None = None,
        num_threads: int = 2,
        num_workers: int = 0,
        skip_bad: bool = False,
        shard_index: int = 0,
        shard_count: int = 1,
    ):
        for domain, source in (("A", source_a), ("B", source_b)):
            if len(source) == 0:
                raise DataError(f"domain {domain} has no records (empty domain): {source!r}")
        if batch_size < 1 or not 0 <= shard_index < shard_count:
            raise ValueError(f"bad batch_size {batch_size} or shard {shard_index} of {shard_count}")
        self.source_a, self.source_b = source_a, source_b
        transform = transform or TransformConfig()
        self.batch_size, self.transform, self.seed = batch_size, transform, seed
        self.shuffle, self.num_epochs = shuffle, num_epochs
        self.num_threads, self.num_workers = num_threads, num_workers
        self.shard_index, self.shard_count = shard_index, shard_count
        self.epoch_length = max(len(source_a), len(source_b))
        self.skips = SkipLog(skip_bad)
        self._maker = _PairMaker(source_a, source_b, transform, seed, skip_bad)
        self._batches_served = 0
        self._iterator: Iterator[dict[str, Any]] | None = None

    @property
    def batches_per_epoch(self) -> float:
        """Batches of this process per epoch of `epoch_length` records (may be fractional)."""
        return self.epoch_length / (self.batch_size * self.shard_count)

    def _dataset(self) -> grain.MapDataset:
        positions = grain.MapDataset.range(self.epoch_length)
        if self.shuffle:
            positions = positions.shuffle(seed=self.seed)  # reshuffled per epoch by `repeat`
        stream = positions.repeat(self.num_epochs).map_with_index(self._maker)
        batches = stream.batch(self.batch_size, drop_remainder=True, batch_fn=stack_batch)
        whole = len(batches) - len(batches) % self.shard_count  # all shards serve the same number
        return batches[self.shard_index : whole : self.shard_count]

    def _start(self) -> Iterator[dict[str, Any]]:
        batches = self._dataset()[self._batches_served :]
        read = grain.ReadOptions(num_threads=self.num_threads, prefetch_buffer_size=max(2 * self.num_threads, 2))
        stream = batches.to_iter_dataset(read)
        if self.num_workers > 0:
            _mark_absl_flags_parsed()
            stream = stream.mp_prefetch(grain.MultiprocessingOptions(num_workers=self.num_workers))
        return iter(stream)

    def __iter__(self) -> PairLoader:
        return self

    def __next__(self) -> dict[str, Any]:
        if self._iterator is None:
            self._iterator = self._start()
        batch = next(self._iterator)
        for message in batch.pop("skipped"):
            self.skips.handle(message)
        self._batches_served += 1
        # own copies: with worker processes the arrays arrive in shared memory
        return {k: np.array(v) for k, v in batch.items()}

    def _fingerprint(self) -> dict[str, Any]:
        return {
            "seed": self.seed, "size_A": len(self.source_a), "size_B": len(self.source_b),
            "batch_size": self.batch_size, "shuffle": self.shuffle, "num_epochs": self.num_epochs,
            "shard_index": self.shard_index, "shard_count": self.shard_count,
        }

    def get_state(self) -> dict[str, Any]:
        """JSON-serialisable position: resuming from it yields exactly the batches that follow."""
        return {"version": _STATE_VERSION, "batches_served": self._batches_served,
                "skipped": self.skips.count, "pipeline": self._fingerprint()}

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue after the batches counted in `state` (from `get_state` of an equal pipeline; the
        split over processes may differ if the global batch is the same)."""
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"unknown data iterator state version {state.get('version')!r}")
        saved, mine = _without_split(state["pipeline"]), _without_split(self._fingerprint())
        diff = {k: (v, mine.get(k)) for k, v in saved.items() if mine.get(k) != v}
        if diff:
            raise ValueError(f"data iterator state is from a different pipeline (saved, now): {diff}")
        self.close()
        self._batches_served = int(state["batches_served"])
        self.skips.count = int(state["skipped"])

    def close(self) -> None:
        """Stop prefetching threads and worker processes (a later `next` starts afresh)."""
        if self._iterator is not None:
            close = getattr(self._iterator, "close", None)
            if close is not None:
                close()
            self._iterator = None

    def __enter__(self) -> PairLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _without_split(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """A pipeline fingerprint with the split over processes replaced by the global batch size."""
    split = ("batch_size", "shard_index", "shard_count")
    rest = {k: v for k, v in fingerprint.items() if k not in split}
    return {**rest, "global_batch_size": fingerprint["batch_size"] * fingerprint["shard_count"]}


def _mark_absl_flags_parsed() -> None:
    """grain's worker processes read absl flags; accept their defaults when no one parsed them."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
