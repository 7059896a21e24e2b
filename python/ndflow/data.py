"""Datasets, samplers and a DataLoader shaped like PyTorch's torch.utils.data.

    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, seed=0)
    for epoch in range(3):
        for xb, yb in loader:      # ndflow tensors; each iter() is a new epoch
            ...

What differs from PyTorch, and why:
- No worker processes. Batches are prepared ahead in one background thread
  (`prefetch` batches deep). Datasets that implement `__getitems__(indices)`
  build a whole batch with NumPy fancy indexing, which releases the GIL, so one
  thread keeps up with a training step and no per-sample Python runs.
- Shuffling is a pure function of (seed, epoch): every `iter()` starts the next
  epoch, `set_epoch(n)` picks one, and `state_dict()` / `load_state_dict()`
  record (epoch, batches consumed, seed) so a resumed run sees the same batches.
- Samples are NumPy; the collate turns the stacked batch into ndflow tensors
  (`ndflow.from_numpy` of a fresh array, so a batch never aliases the dataset).
"""

from __future__ import annotations

import collections.abc as abc
import itertools
import sys
import threading
from collections import deque

import numpy as np

__all__ = [
    "Dataset", "TensorDataset", "Subset", "random_split", "SampleBatch",
    "Sampler", "SequentialSampler", "RandomSampler", "BatchSampler",
    "DataLoader", "default_collate", "default_convert",
]


# --------------------------------------------------------------------------
# NumPy -> ndflow. The only place this module touches ndflow, imported lazily
# so the module loads (and its tests run) without the compiled extension.

def _to_tensor(a: np.ndarray):
    import ndflow
    return ndflow.from_numpy(a)


def _is_tensor(x) -> bool:
    # NOTE: no import here: if ndflow was never imported, x cannot be a Tensor.
    tensor_type = getattr(sys.modules.get("ndflow"), "Tensor", None)
    return tensor_type is not None and isinstance(x, tensor_type)


def _fresh_tensor(a: np.ndarray):
    # from_numpy shares memory; copy unless `a` is a C-contiguous array that
    # owns its buffer (np.stack and fancy indexing already made one).
    if not (a.flags.c_contiguous and a.flags.owndata and a.flags.writeable):
        a = np.array(a, order="C", copy=True)
    return _to_tensor(a)


# --------------------------------------------------------------------------
# Datasets

class Dataset:
    """A map-style dataset: `__getitem__(i)` and `__len__()`.

    Optionally `__getitems__(indices)` (PyTorch 2.x's batched-fetch hook):
    given an int64 index array, return a sequence of samples — ideally a
    SampleBatch built with fancy indexing, which the default collate converts
    without looking at samples one by one.
    """

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must implement __len__")


class SampleBatch(abc.Sequence):
    """Samples stored column-wise: a tuple/list/dict tree of arrays whose
    first dimension is the batch.

    Indexing gives sample i (so a custom collate_fn sees an ordinary sequence
    of samples), while default_collate takes the columns as they are.
    """

    def __init__(self, stacked):
        leaves = _leaves(stacked)
        if not leaves:
            raise ValueError("SampleBatch needs at least one array")
        n = len(leaves[0])
        for leaf in leaves:
            if not isinstance(leaf, np.ndarray) or leaf.ndim == 0 or len(leaf) != n:
                raise ValueError("SampleBatch leaves must be arrays with the same first "
                                 f"dimension {n}, got {type(leaf).__name__} "
                                 f"{getattr(leaf, 'shape', '')}")
        self.stacked = stacked
        self._n = n

    def __len__(self):
        return self._n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return SampleBatch(_tree_map(lambda a: a[i], self.stacked))
        return _tree_map(lambda a: a[i], self.stacked)

    def __repr__(self):
        return f"SampleBatch(n={self._n})"


class TensorDataset(Dataset):
    """Samples are the i-th rows of arrays sharing a first dimension.

    Accepts NumPy arrays or ndflow tensors (kept as NumPy views). Items are
    tuples of NumPy arrays; batches are fetched with one fancy index per array.
    """

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset needs at least one array")
        arrays = tuple(t.numpy() if _is_tensor(t) else np.asarray(t) for t in tensors)
        for k, a in enumerate(arrays):
            if a.ndim == 0:
                raise ValueError(f"TensorDataset: argument {k} is a scalar; each needs a "
                                 "first (sample) dimension")
        sizes = [len(a) for a in arrays]
        if len(set(sizes)) != 1:
            raise ValueError(f"TensorDataset: arrays have different first dimensions {sizes}")
        self.tensors = arrays

    def __len__(self):
        return len(self.tensors[0])

    def __getitem__(self, index):
        return tuple(a[index] for a in self.tensors)

    def __getitems__(self, indices):
        idx = np.asarray(indices, dtype=np.int64)
        return SampleBatch(tuple(a[idx] for a in self.tensors))


class Subset(Dataset):
    """The samples of `dataset` at `indices`, in that order."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, index):
        return self.dataset[int(self.indices[index])]

    def __getitems__(self, indices):
        mapped = self.indices[np.asarray(indices, dtype=np.int64)]
        return _fetch_samples(self.dataset, mapped)


def random_split(dataset, lengths, seed=None, generator=None):
    """Split into non-overlapping Subsets of the given lengths (or fractions
    summing to 1, rounded like PyTorch), with a permutation drawn from seed."""
    n = len(dataset)
    lengths = list(lengths)
    if lengths and all(0 <= x <= 1 for x in lengths) and abs(sum(lengths) - 1) < 1e-9 \
            and sum(lengths) != n:
        counts = [int(np.floor(n * f)) for f in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        lengths = counts
    if sum(lengths) != n:
        raise ValueError(f"random_split: lengths {lengths} sum to {sum(lengths)}, "
                         f"but the dataset has {n} samples")
    rng = np.random.default_rng(_resolve_seed(seed, generator))
    perm = rng.permutation(n)
    bounds = np.cumsum([0] + lengths)
    return [Subset(dataset, perm[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


# --------------------------------------------------------------------------
# Samplers

def _resolve_seed(seed, generator) -> int:
    if seed is not None and generator is not None:
        raise ValueError("pass either seed or generator, not both")
    if generator is not None:
        # Draw one seed from the generator; everything after is (seed, epoch)-derived.
        return int(generator.integers(0, 2**63))
    if seed is None:
        return int(np.random.SeedSequence().entropy % 2**63)
    return int(seed)


class Sampler:
    """Yields dataset indices. Subclasses implement __iter__ and __len__."""

    def __iter__(self):
        raise NotImplementedError

    def __len__(self):
        raise NotImplementedError


class SequentialSampler(Sampler):
    def __init__(self, data_source):
        self.data_source = data_source

    def _draw_indices(self) -> np.ndarray:
        return np.arange(len(self.data_source), dtype=np.int64)

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self):
        return len(self.data_source)


class RandomSampler(Sampler):
    """A permutation (or draws with replacement) that depends only on
    (seed, epoch). Each iteration uses the current epoch and then advances it;
    `set_epoch(n)` chooses the epoch explicitly (like DistributedSampler).
    Without seed or generator a random seed is chosen once and kept in .seed.
    """

    def __init__(self, data_source, replacement=False, num_samples=None,
                 generator=None, seed=None):
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        if num_samples is not None and (not isinstance(num_samples, int) or num_samples <= 0):
            raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
        if num_samples is not None and not replacement and num_samples > len(data_source):
            raise ValueError(f"num_samples={num_samples} exceeds the dataset size "
                             f"{len(data_source)} without replacement")
        self.seed = _resolve_seed(seed, generator)
        self.epoch = 0

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)

    def _draw_indices(self) -> np.ndarray:
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, self.epoch])))
        self.epoch += 1
        n = len(self.data_source)
        if self.replacement:
            return rng.integers(0, n, size=self.num_samples, dtype=np.int64)
        return rng.permutation(n)[: self.num_samples].astype(np.int64, copy=False)

    def __iter__(self):
        return iter(self._draw_indices().tolist())

    def __len__(self):
        return self.num_samples


class BatchSampler(Sampler):
    """Groups a sampler's indices into batches (int64 NumPy arrays)."""

    def __init__(self, sampler, batch_size: int, drop_last: bool):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last

    def set_epoch(self, epoch: int):
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self):
        draw = getattr(self.sampler, "_draw_indices", None)
        if draw is not None:
            # Our samplers: draw the epoch's order now (not lazily in the
            # prefetch thread) and slice it, with no per-index Python.
            return self._slices(draw())
        return self._group(iter(self.sampler))

    def _slices(self, idx):
        bs = self.batch_size
        end = len(idx) - len(idx) % bs if self.drop_last else len(idx)
        for start in range(0, end, bs):
            yield idx[start:start + bs]

    def _group(self, indices):
        bs = self.batch_size
        batch = []
        for i in indices:
            batch.append(i)
            if len(batch) == bs:
                yield np.asarray(batch, dtype=np.int64)
                batch = []
        if batch and not self.drop_last:
            yield np.asarray(batch, dtype=np.int64)

    def __len__(self):
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


# --------------------------------------------------------------------------
# Collate

def _leaves(tree):
    if isinstance(tree, abc.Mapping):
        return [x for v in tree.values() for x in _leaves(v)]
    if isinstance(tree, (tuple, list)):
        return [x for v in tree for x in _leaves(v)]
    return [tree]


def _tree_map(fn, tree):
    if isinstance(tree, abc.Mapping):
        return {k: _tree_map(fn, v) for k, v in tree.items()}
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):   # namedtuple
        return type(tree)(*(_tree_map(fn, v) for v in tree))
    if isinstance(tree, (tuple, list)):
        return type(tree)(_tree_map(fn, v) for v in tree)
    return fn(tree)


def _stack(arrays):
    try:
        return np.stack(arrays)
    except ValueError:
        shapes = {a.shape for a in arrays}
        raise ValueError(f"[default_collate] samples have different shapes {sorted(shapes)}; "
                         "pad them or pass collate_fn=") from None


def default_collate(batch):
    """Stack a list of samples into ndflow tensors, recursing into
    tuples/lists/dicts like torch's default_collate.

    NumPy arrays, NumPy scalars and ndflow tensors keep their dtype; Python
    ints become int64, floats float32 (NOTE: torch uses float64 for floats;
    float32 is what a model here wants), bools bool. Strings stay lists.
    A SampleBatch is already stacked and is only converted.
    """
    if isinstance(batch, SampleBatch):
        return _tree_map(_fresh_tensor, batch.stacked)
    if len(batch) == 0:
        raise ValueError("[default_collate] empty batch")
    elem = batch[0]
    if _is_tensor(elem):
        return _fresh_tensor(_stack([t.numpy() for t in batch]))
    if isinstance(elem, np.ndarray):
        if elem.dtype.kind in "USO":
            raise TypeError(f"[default_collate] cannot batch arrays of dtype {elem.dtype}")
        return _fresh_tensor(_stack(batch))
    if isinstance(elem, np.generic):
        return _fresh_tensor(np.array(batch))
    if isinstance(elem, bool):
        return _fresh_tensor(np.array(batch, dtype=np.bool_))
    if isinstance(elem, int):
        return _fresh_tensor(np.array(batch, dtype=np.int64))
    if isinstance(elem, float):
        return _fresh_tensor(np.array(batch, dtype=np.float32))
    if isinstance(elem, (str, bytes)):
        return list(batch)
    if isinstance(elem, abc.Mapping):
        return {k: default_collate([d[k] for d in batch]) for k in elem}
    if isinstance(elem, (tuple, list)):
        size = len(elem)
        if any(len(s) != size for s in batch):
            raise ValueError("[default_collate] samples in the batch have different lengths "
                             f"{sorted({len(s) for s in batch})}")
        columns = [default_collate(list(col)) for col in zip(*batch)]
        if hasattr(elem, "_fields"):
            return type(elem)(*columns)
        return tuple(columns) if isinstance(elem, tuple) else columns
    raise TypeError(f"[default_collate] cannot batch samples of type {type(elem).__name__}; "
                    "pass collate_fn=")


def default_convert(sample):
    """Convert one unbatched sample's arrays to ndflow tensors (batch_size=None)."""
    def convert(x):
        if isinstance(x, np.ndarray) and x.dtype.kind not in "USO":
            return _fresh_tensor(x)
        return x
    return _tree_map(convert, sample)


def _fetch_samples(dataset, indices):
    getitems = getattr(dataset, "__getitems__", None)
    if getitems is not None:
        return getitems(indices)
    return [dataset[i] for i in np.asarray(indices).tolist()]


class _Fetcher:
    """indices -> collated batch. Holds no reference to the iterator, so the
    prefetch thread never keeps a dropped iterator alive."""

    def __init__(self, dataset, collate_fn, batched):
        self.dataset, self.collate_fn, self.batched = dataset, collate_fn, batched

    def __call__(self, indices):
        try:
            if self.batched:
                return self.collate_fn(_fetch_samples(self.dataset, indices))
            return self.collate_fn(self.dataset[indices])
        except StopIteration as e:
            # NOTE: a StopIteration escaping here would silently end the epoch.
            raise RuntimeError("dataset raised StopIteration while fetching a batch") from e


# --------------------------------------------------------------------------
# Prefetching

class _Channel:
    """A bounded FIFO that either side can close; put() returns False once closed."""

    def __init__(self, capacity: int):
        self._cv = threading.Condition()   # RLock: safe if __del__ re-enters on this thread
        self._items = deque()
        self._capacity = capacity
        self._closed = False

    def put(self, item) -> bool:
        with self._cv:
            while len(self._items) >= self._capacity and not self._closed:
                self._cv.wait()
            if self._closed:
                return False
            self._items.append(item)
            self._cv.notify_all()
            return True

    def get(self):
        with self._cv:
            while not self._items:
                self._cv.wait()
            item = self._items.popleft()
            self._cv.notify_all()
            return item

    def close(self):
        with self._cv:
            self._closed = True
            self._items.clear()
            self._cv.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


_OK, _END, _ERR = 0, 1, 2


def _produce(batches, fetch, channel: _Channel):
    # Runs in the prefetch thread. Every exit path puts _END or _ERR unless the
    # consumer closed the channel, so the consumer's get() always returns.
    try:
        for indices in batches:
            if channel.closed:
                return
            if not channel.put((_OK, fetch(indices))):
                return
        channel.put((_END, None))
    except BaseException as e:   # handed to the consumer with its traceback
        channel.put((_ERR, e))


class _LoaderIterator:
    def __init__(self, loader: "DataLoader", epoch: int, skip: int, generation: int):
        self._loader = loader
        self._epoch = epoch
        self._consumed = skip
        self._generation = generation
        self._done = False
        self._thread = None
        self._channel = None
        batches = iter(loader.batch_sampler if loader.batch_sampler is not None
                       else loader.sampler)
        if skip:
            batches = itertools.islice(batches, skip, None)
        fetch = _Fetcher(loader.dataset, loader.collate_fn, loader.batch_sampler is not None)
        if loader.prefetch > 0:
            self._channel = _Channel(loader.prefetch)
            self._thread = threading.Thread(target=_produce, args=(batches, fetch, self._channel),
                                            name="ndflow-DataLoader-prefetch", daemon=True)
            self._thread.start()
        else:
            self._batches, self._fetch = batches, fetch

    def __iter__(self):
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        if self._channel is None:
            try:
                indices = next(self._batches)
            except StopIteration:
                self._finish(completed=True)
                raise
            try:
                batch = self._fetch(indices)
            except BaseException:
                self._finish(completed=False)
                raise
        else:
            kind, payload = self._channel.get()
            if kind == _END:
                self._finish(completed=True)
                raise StopIteration
            if kind == _ERR:
                self._finish(completed=False)
                payload.add_note("(raised by the dataset or collate_fn in the DataLoader's "
                                 "prefetch thread)")
                raise payload
            batch = payload
        self._consumed += 1
        self._loader._record(self._generation, self._epoch, self._consumed)
        return batch

    def _finish(self, completed: bool):
        self._done = True
        if completed:
            self._loader._record(self._generation, self._epoch + 1, 0)
        self.close()

    def close(self):
        """Stop prefetching and wait for the thread (at most one batch's fetch)."""
        self._done = True
        if self._channel is not None:
            self._channel.close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
            self._thread = None

    def __del__(self):
        self.close()

    def __len__(self):
        return len(self._loader)


class DataLoader:
    """Batches of a Dataset as ndflow tensors.

    Arguments as torch.utils.data.DataLoader, plus:
      seed      shuffle seed; the order of epoch e depends only on (seed, e).
                None draws one at random (see .seed / state_dict()).
      prefetch  batches prepared ahead in a background thread; 0 fetches
                synchronously in __next__.
    Each iter() starts the next epoch (0, 1, ...); set_epoch(n) picks the
    next one. state_dict()/load_state_dict() save and restore the position.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, sampler=None, batch_sampler=None,
                 *, collate_fn=None, drop_last=False, seed=None, generator=None, prefetch=2):
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler is mutually exclusive with batch_size, "
                                 "shuffle, sampler and drop_last")
            batch_size, drop_last = None, False
        elif sampler is not None and shuffle:
            raise ValueError("sampler is mutually exclusive with shuffle")
        if not isinstance(prefetch, int) or prefetch < 0:
            raise ValueError(f"prefetch must be an int >= 0, got {prefetch!r}")
        if sampler is None:
            sampler = (RandomSampler(dataset, seed=seed, generator=generator) if shuffle
                       else SequentialSampler(dataset))
        elif seed is not None or generator is not None:
            raise ValueError("seed/generator apply to shuffle=True; seed your sampler instead")
        if batch_sampler is None and batch_size is not None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        if collate_fn is None:
            collate_fn = default_collate if batch_sampler is not None else default_convert
        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.collate_fn = collate_fn
        self.prefetch = prefetch
        self._next_epoch = 0
        self._skip = 0
        self._generation = 0
        self._state = (0, 0)   # (epoch, batches consumed) of the latest iterator

    @property
    def seed(self):
        """The shuffle seed (None when the sampler takes none)."""
        sampler = self._seedable_sampler()
        return None if sampler is None else sampler.seed

    def _epoch_target(self):
        return self.batch_sampler if self.batch_sampler is not None else self.sampler

    def _seedable_sampler(self):
        target = self._epoch_target()
        if hasattr(target, "seed"):
            return target
        inner = getattr(target, "sampler", None)
        return inner if hasattr(inner, "seed") else None

    def set_epoch(self, epoch: int):
        """The next iter() runs this epoch (from its first batch)."""
        self._next_epoch = int(epoch)
        self._skip = 0
        self._state = (self._next_epoch, 0)

    def __iter__(self):
        epoch, skip = self._next_epoch, self._skip
        self._next_epoch, self._skip = epoch + 1, 0
        self._generation += 1
        self._state = (epoch, skip)
        target = self._epoch_target()
        if hasattr(target, "set_epoch"):
            target.set_epoch(epoch)
        return _LoaderIterator(self, epoch, skip, self._generation)

    def _record(self, generation, epoch, consumed):
        if generation == self._generation:   # only the newest iterator owns the position
            self._state = (epoch, consumed)

    def __len__(self):
        return len(self._epoch_target())

    def state_dict(self) -> dict:
        """Position of the newest iterator: the epoch it runs, batches handed
        out so far (prefetched ones not counted), and the shuffle seed. After
        a completed epoch it is (next epoch, 0)."""
        epoch, consumed = self._state
        return {"epoch": epoch, "batches": consumed, "seed": self.seed}

    def load_state_dict(self, state: dict):
        """The next iter() continues epoch state['epoch'] after
        state['batches'] batches, with the saved seed."""
        missing = {"epoch", "batches", "seed"} - set(state)
        if missing:
            raise KeyError(f"DataLoader.load_state_dict: missing keys {sorted(missing)}")
        epoch, batches = int(state["epoch"]), int(state["batches"])
        if epoch < 0 or batches < 0:
            raise ValueError(f"DataLoader.load_state_dict: negative epoch/batches {epoch}/{batches}")
        sampler = self._seedable_sampler()
        if state["seed"] is not None:
            if sampler is None:
                raise ValueError("DataLoader.load_state_dict: the state has a shuffle seed but "
                                 "this loader's sampler takes none")
            sampler.seed = int(state["seed"])
        self._next_epoch, self._skip = epoch, batches
        self._state = (epoch, batches)
