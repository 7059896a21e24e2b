"""ndflow.data (DataLoader, samplers, collate) and ndflow.datasets.FashionMNIST."""

import collections
import gc
import gzip
import importlib
import os
import sys
import threading
import time
import traceback
import types
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
FASHION = Path("/usr/share/datasets/fashion-mnist")


def _import_modules():
    """The real package when it imports; otherwise the two pure-Python modules
    loaded from the source tree under a private name (no ndflow._C needed),
    with tensors faked so the conversion step is still checked."""
    for attempt in range(2):
        try:
            nd = importlib.import_module("ndflow")
            if hasattr(nd, "from_numpy"):
                return (importlib.import_module("ndflow.data"),
                        importlib.import_module("ndflow.datasets"), nd.Tensor, True)
        except ImportError:
            pass
        if attempt == 0:
            sys.path.insert(0, str(REPO / "python"))
    pkg = types.ModuleType("_ndflow_src")
    pkg.__path__ = [str(REPO / "python" / "ndflow")]
    sys.modules["_ndflow_src"] = pkg
    return (importlib.import_module("_ndflow_src.data"),
            importlib.import_module("_ndflow_src.datasets"), None, False)


data, datasets, TensorType, REAL_NDFLOW = _import_modules()


class FakeTensor:
    def __init__(self, a):
        self._a = a

    def numpy(self):
        return self._a


if not REAL_NDFLOW:
    def _fake_to_tensor(a):
        # The contract the real ndflow.from_numpy relies on: a fresh C array.
        assert a.flags.c_contiguous and a.flags.owndata
        return FakeTensor(a)

    data._to_tensor = _fake_to_tensor
    TensorType = FakeTensor



def arr(t):
    assert isinstance(t, TensorType), f"expected a tensor, got {type(t).__name__}"
    return t.numpy()


def batches_np(loader):
    return [tuple(arr(t) for t in b) for b in loader]


def run_within(seconds, fn):
    """fn() in a thread; fails (instead of hanging the suite) on a deadlock."""
    result = {}

    def body():
        try:
            result["value"] = fn()
        except BaseException as e:
            result["error"] = e

    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"did not finish within {seconds}s (deadlock?)"
    if "error" in result:
        raise result["error"]
    return result.get("value")


def prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "ndflow-DataLoader-prefetch"]


@pytest.fixture
def xy():
    x = np.arange(22 * 3, dtype=np.float32).reshape(22, 3)
    y = np.arange(22, dtype=np.int64)
    return x, y


# ---------------------------------------------------------------- basics

@pytest.mark.parametrize("prefetch", [0, 2])
def test_sequential_batches_shapes_dtypes(xy, prefetch):
    x, y = xy
    loader = data.DataLoader(data.TensorDataset(x, y), batch_size=8, prefetch=prefetch)
    assert len(loader) == 3
    out = batches_np(loader)
    assert [b[0].shape for b in out] == [(8, 3), (8, 3), (6, 3)]
    assert all(b[0].dtype == np.float32 and b[1].dtype == np.int64 for b in out)
    np.testing.assert_array_equal(np.concatenate([b[0] for b in out]), x)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in out]), y)


def test_drop_last_and_len(xy):
    x, y = xy
    loader = data.DataLoader(data.TensorDataset(x, y), batch_size=8, drop_last=True)
    assert len(loader) == 2
    out = batches_np(loader)
    assert [len(b[1]) for b in out] == [8, 8]
    shuffled = data.DataLoader(data.TensorDataset(x, y), batch_size=5, shuffle=True,
                               drop_last=True, seed=1)
    assert len(shuffled) == 4 and len(list(shuffled)) == 4
    assert len(data.DataLoader(data.TensorDataset(x, y), batch_size=5)) == 5


def test_batches_do_not_alias_dataset(xy):
    x, y = xy
    loader = data.DataLoader(data.TensorDataset(x, y), batch_size=22)
    bx, _ = next(iter(loader))
    assert not np.shares_memory(arr(bx), x)


def test_batch_size_none_yields_single_samples(xy):
    x, y = xy
    loader = data.DataLoader(data.TensorDataset(x, y), batch_size=None)
    items = list(loader)
    assert len(loader) == len(items) == 22
    np.testing.assert_array_equal(arr(items[3][0]), x[3])


def test_argument_errors(xy):
    ds = data.TensorDataset(*xy)
    with pytest.raises(ValueError, match="mutually exclusive"):
        data.DataLoader(ds, batch_size=4, batch_sampler=data.BatchSampler(
            data.SequentialSampler(ds), 4, False))
    with pytest.raises(ValueError, match="mutually exclusive"):
        data.DataLoader(ds, shuffle=True, sampler=data.SequentialSampler(ds))
    with pytest.raises(ValueError, match="prefetch"):
        data.DataLoader(ds, prefetch=-1)
    with pytest.raises(ValueError, match="batch_size"):
        data.DataLoader(ds, batch_size=0)
    with pytest.raises(ValueError, match="first dimensions"):
        data.TensorDataset(np.zeros(3), np.zeros(4))


# ---------------------------------------------------------------- shuffling

def epoch_order(loader):
    return np.concatenate([b[1] for b in batches_np(loader)])


def test_shuffle_deterministic_per_seed_and_epoch(xy):
    ds = data.TensorDataset(*xy)
    a = data.DataLoader(ds, batch_size=4, shuffle=True, seed=7)
    b = data.DataLoader(ds, batch_size=4, shuffle=True, seed=7)
    a0, a1 = epoch_order(a), epoch_order(a)
    b0, b1 = epoch_order(b), epoch_order(b)
    np.testing.assert_array_equal(a0, b0)
    np.testing.assert_array_equal(a1, b1)
    assert not np.array_equal(a0, a1), "each epoch needs a new permutation"
    assert sorted(a0.tolist()) == list(range(22)) and sorted(a1.tolist()) == list(range(22))
    other = epoch_order(data.DataLoader(ds, batch_size=4, shuffle=True, seed=8))
    assert not np.array_equal(a0, other)
    a.set_epoch(0)
    np.testing.assert_array_equal(epoch_order(a), a0)
    np.testing.assert_array_equal(epoch_order(a), a1)   # then it advances again


def test_unseeded_shuffle_records_its_seed(xy):
    ds = data.TensorDataset(*xy)
    a = data.DataLoader(ds, batch_size=4, shuffle=True)
    b = data.DataLoader(ds, batch_size=4, shuffle=True, seed=a.seed)
    assert isinstance(a.seed, int)
    np.testing.assert_array_equal(epoch_order(a), epoch_order(b))
    assert data.DataLoader(ds).seed is None


def test_random_sampler_generator_and_replacement():
    src = range(10)
    s1 = data.RandomSampler(src, generator=np.random.default_rng(3))
    s2 = data.RandomSampler(src, generator=np.random.default_rng(3))
    first = list(s1)
    assert first == list(s2) and sorted(first) == list(range(10))
    assert list(s1) != first   # standalone iteration advances the epoch
    s1.set_epoch(0)
    assert list(s1) == first
    r = data.RandomSampler(src, replacement=True, num_samples=25, seed=0)
    draws = list(r)
    assert len(r) == len(draws) == 25 and all(0 <= i < 10 for i in draws)
    with pytest.raises(ValueError):
        data.RandomSampler(src, num_samples=11)


def test_batch_sampler_over_plain_sampler():
    class Evens(data.Sampler):
        def __iter__(self):
            return iter(range(0, 10, 2))

        def __len__(self):
            return 5

    got = [b.tolist() for b in data.BatchSampler(Evens(), 2, drop_last=False)]
    assert got == [[0, 2], [4, 6], [8]]
    assert len(data.BatchSampler(Evens(), 2, drop_last=True)) == 2
    assert [b.tolist() for b in data.BatchSampler(Evens(), 2, drop_last=True)] == [[0, 2], [4, 6]]


# ---------------------------------------------------------------- collate

Pair = collections.namedtuple("Pair", "a b")


class DictDataset(data.Dataset):
    """No __getitems__: exercises the per-sample path and the recursive collate."""

    def __len__(self):
        return 6

    def __getitem__(self, i):
        return {"x": np.full((2, 2), i, dtype=np.float32), "label": i, "weight": 0.5 * i,
                "flag": i % 2 == 0, "name": f"s{i}",
                "pair": (np.float64(i), np.int32(-i)), "nt": Pair(i, [i, i + 1])}


def test_collate_recurses_into_dicts_tuples_lists():
    b = next(iter(data.DataLoader(DictDataset(), batch_size=3)))
    assert arr(b["x"]).shape == (3, 2, 2) and arr(b["x"]).dtype == np.float32
    np.testing.assert_array_equal(arr(b["label"]), [0, 1, 2])
    assert arr(b["label"]).dtype == np.int64
    assert arr(b["weight"]).dtype == np.float32
    np.testing.assert_allclose(arr(b["weight"]), [0, 0.5, 1.0])
    assert arr(b["flag"]).dtype == np.bool_
    assert b["name"] == ["s0", "s1", "s2"]
    assert isinstance(b["pair"], tuple)
    assert arr(b["pair"][0]).dtype == np.float64 and arr(b["pair"][1]).dtype == np.int32
    assert isinstance(b["nt"], Pair) and isinstance(b["nt"].b, list)
    np.testing.assert_array_equal(arr(b["nt"].b[1]), [1, 2, 3])


def test_collate_errors():
    with pytest.raises(ValueError, match="different shapes"):
        data.default_collate([np.zeros(2), np.zeros(3)])
    with pytest.raises(TypeError, match="cannot batch"):
        data.default_collate([object(), object()])
    with pytest.raises(ValueError, match="different lengths"):
        data.default_collate([(1, 2), (1,)])


class BatchOnly(data.Dataset):
    """__getitem__ is never expected: every fetch must use __getitems__."""

    def __init__(self, n=10):
        self.x = np.arange(n, dtype=np.float32)
        self.calls = []

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        raise AssertionError("per-sample fetch on a dataset with __getitems__")

    def __getitems__(self, indices):
        self.calls.append(np.asarray(indices).tolist())
        idx = np.asarray(indices)
        return data.SampleBatch({"x": self.x[idx], "i": idx.astype(np.int64)})


def test_getitems_fast_path_one_call_per_batch():
    ds = BatchOnly()
    out = list(data.DataLoader(ds, batch_size=4, shuffle=True, seed=0))
    assert len(ds.calls) == 3 and sorted(sum(ds.calls, [])) == list(range(10))
    assert arr(out[0]["x"]).shape == (4,)


def test_sample_batch_is_a_sequence_for_custom_collate():
    ds = data.TensorDataset(np.arange(6) * 10, np.arange(6))
    got = next(iter(data.DataLoader(ds, batch_size=3, collate_fn=list)))
    assert [(int(a), int(b)) for a, b in got] == [(0, 0), (10, 1), (20, 2)]


def test_subset_and_random_split(xy):
    ds = data.TensorDataset(*xy)
    parts = data.random_split(ds, [0.5, 0.5], seed=0)
    assert [len(p) for p in parts] == [11, 11]
    ids = np.concatenate([epoch_order(data.DataLoader(p, batch_size=4)) for p in parts])
    assert sorted(ids.tolist()) == list(range(22))
    with pytest.raises(ValueError, match="sum to"):
        data.random_split(ds, [10, 10])


@pytest.mark.skipif(not REAL_NDFLOW, reason="needs the built ndflow package")
def test_ndflow_tensors_in_and_out():
    import ndflow
    x = ndflow.tensor(np.arange(12, dtype=np.float32).reshape(6, 2))
    ds = data.TensorDataset(x, np.arange(6))
    bx, by = next(iter(data.DataLoader(ds, batch_size=4)))
    assert isinstance(bx, ndflow.Tensor)
    np.testing.assert_array_equal(bx.numpy(), x.numpy()[:4])
    stacked = data.default_collate([ndflow.tensor(np.ones(3, np.float32)) for _ in range(2)])
    assert isinstance(stacked, ndflow.Tensor) and tuple(stacked.numpy().shape) == (2, 3)


# ---------------------------------------------------------------- prefetch thread

class Slow(data.Dataset):
    def __init__(self, n, delay, fail_at=None):
        self.n, self.delay, self.fail_at = n, delay, fail_at

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.__getitems__([i])[0]

    def __getitems__(self, indices):
        time.sleep(self.delay)
        idx = np.asarray(indices, dtype=np.int64)
        if self.fail_at is not None and self.fail_at in idx:
            raise KeyError(f"bad sample {self.fail_at}")
        return data.SampleBatch((idx.astype(np.float32),))


def test_prefetch_overlaps_fetch_with_the_step():
    delay, n = 0.03, 8
    loader = data.DataLoader(Slow(n, delay), batch_size=1, prefetch=2)
    start = time.perf_counter()
    for _ in loader:
        time.sleep(delay)   # the "training step"
    elapsed = time.perf_counter() - start
    serial = 2 * delay * n   # 0.48 s without overlap; ~0.27 s with it
    assert elapsed < 0.75 * serial, f"{elapsed:.3f}s: fetch and step did not overlap"


@pytest.mark.parametrize("prefetch", [0, 1, 3])
def test_dataset_exception_reaches_consumer_with_traceback(prefetch):
    loader = data.DataLoader(Slow(10, 0, fail_at=5), batch_size=2, prefetch=prefetch)
    it = iter(loader)
    got = [next(it), next(it)]
    with pytest.raises(KeyError, match="bad sample 5") as info:
        run_within(5, lambda: [next(it) for _ in range(5)])
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert "__getitems__" in frames, frames
    assert len(got) == 2
    with pytest.raises(StopIteration):
        next(it)
    assert not prefetch_threads()


def test_exception_in_collate_propagates():
    def collate(_):
        raise RuntimeError("collate broke")

    with pytest.raises(RuntimeError, match="collate broke"):
        run_within(5, lambda: list(data.DataLoader(data.TensorDataset(np.zeros(4)),
                                                    batch_size=2, collate_fn=collate)))
    assert not prefetch_threads()


def test_early_break_and_drop_stop_the_thread():
    baseline = threading.active_count()

    def scenarios():
        # Producer blocked on a full queue.
        loader = data.DataLoader(Slow(100, 0), batch_size=1, prefetch=2)
        for _ in range(3):
            for _ in loader:
                break
        # Producer in the middle of a slow fetch.
        slow = data.DataLoader(Slow(100, 0.05), batch_size=1, prefetch=2)
        it = iter(slow)
        next(it)
        del it
        # An iterator kept alive only by a reference cycle, freed by the GC.
        it = iter(loader)
        next(it)
        it.cycle = it
        del it
        gc.collect()
        # Explicit close, and never-started iterators.
        it = iter(loader)
        it.close()
        iter(loader)

    run_within(10, scenarios)
    gc.collect()
    assert not prefetch_threads()
    assert threading.active_count() == baseline


def test_prefetch_and_sync_give_the_same_batches(xy):
    ds = data.TensorDataset(*xy)
    a = batches_np(data.DataLoader(ds, batch_size=5, shuffle=True, seed=2, prefetch=0))
    b = batches_np(data.DataLoader(ds, batch_size=5, shuffle=True, seed=2, prefetch=4))
    for (ax, ay), (bx, by) in zip(a, b, strict=True):
        np.testing.assert_array_equal(ax, bx)
        np.testing.assert_array_equal(ay, by)


# ---------------------------------------------------------------- checkpoint / resume

@pytest.mark.parametrize("prefetch", [0, 2])
def test_state_dict_resume_continues_the_same_order(xy, prefetch):
    ds = data.TensorDataset(*xy)
    a = data.DataLoader(ds, batch_size=4, shuffle=True, seed=11, prefetch=prefetch)
    assert a.state_dict() == {"epoch": 0, "batches": 0, "seed": 11}
    list(a)
    assert a.state_dict() == {"epoch": 1, "batches": 0, "seed": 11}
    it = iter(a)
    next(it), next(it)
    state = a.state_dict()
    assert state == {"epoch": 1, "batches": 2, "seed": 11}   # prefetched batches not counted
    rest = [b[1] for b in (tuple(arr(t) for t in b) for b in it)]
    next_epoch = epoch_order(a)

    b = data.DataLoader(ds, batch_size=4, shuffle=True, prefetch=prefetch)  # other seed
    b.load_state_dict(state)
    assert b.state_dict() == state
    resumed = [y for _, y in batches_np(b)]
    assert len(resumed) == len(rest) == 4
    for r, e in zip(resumed, rest):
        np.testing.assert_array_equal(r, e)
    np.testing.assert_array_equal(epoch_order(b), next_epoch)


def test_state_dict_sequential_and_bad_state(xy):
    ds = data.TensorDataset(*xy)
    a = data.DataLoader(ds, batch_size=10)
    a.load_state_dict({"epoch": 3, "batches": 2, "seed": None})
    assert [len(y) for _, y in batches_np(a)] == [2]
    assert a.state_dict() == {"epoch": 4, "batches": 0, "seed": None}
    with pytest.raises(KeyError, match="seed"):
        a.load_state_dict({"epoch": 0, "batches": 0})
    with pytest.raises(ValueError, match="seed"):
        a.load_state_dict({"epoch": 0, "batches": 0, "seed": 5})


# ---------------------------------------------------------------- FashionMNIST

needs_fashion = pytest.mark.skipif(not (FASHION / "train-labels-idx1-ubyte.gz").exists(),
                                   reason="dataset-fashion-mnist is not installed")


@needs_fashion
@pytest.mark.parametrize("train,count,prefix", [(True, 60000, "train"), (False, 10000, "t10k")])
def test_fashion_mnist_real_files(train, count, prefix):
    start = time.perf_counter()
    ds = datasets.FashionMNIST(train=train)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"loading took {elapsed:.2f}s"
    assert len(ds) == count
    assert ds.data.shape == (count, 28, 28) and ds.data.dtype == np.uint8
    assert ds.targets.dtype == np.int64 and set(np.unique(ds.targets)) == set(range(10))
    assert len(ds.classes) == 10 and ds.classes[9] == "Ankle boot"
    with gzip.open(FASHION / f"{prefix}-labels-idx1-ubyte.gz") as f:
        by_hand = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    np.testing.assert_array_equal(ds.targets[:20], by_hand[:20])
    image, label = ds[0]
    assert image.shape == (1, 28, 28) and image.dtype == np.float32
    assert 0 <= image.min() and image.max() <= 1 and image.max() > 0
    assert label.dtype == np.int64 and label == by_hand[0]
    np.testing.assert_array_equal(image[0] * 255, ds.data[0].astype(np.float32))


@needs_fashion
def test_fashion_mnist_loader_batches():
    ds = datasets.FashionMNIST(train=False)
    loader = data.DataLoader(ds, batch_size=256, shuffle=True, seed=0)
    assert len(loader) == 40
    x, y = next(iter(loader))
    x, y = arr(x), arr(y)
    assert x.shape == (256, 1, 28, 28) and x.dtype == np.float32
    assert y.shape == (256,) and y.dtype == np.int64
    # the fast path and per-item access agree
    order = np.random.Generator(np.random.PCG64(np.random.SeedSequence([0, 0]))).permutation(10000)
    for k in (0, 17, 255):
        np.testing.assert_array_equal(x[k], ds[int(order[k])][0])
        assert y[k] == ds[int(order[k])][1]


@needs_fashion
def test_fashion_mnist_transforms_apply_per_item():
    ds = datasets.FashionMNIST(train=False, transform=lambda im: im[:, ::2, ::2].copy(),
                               target_transform=lambda t: t + 100)
    x, y = next(iter(data.DataLoader(ds, batch_size=5)))
    assert arr(x).shape == (5, 1, 14, 14)
    assert arr(y).min() >= 100


def write_idx(path, magic, dims, payload, compress=None):
    body = np.array([magic, *dims], dtype=">u4").tobytes() + bytes(payload)
    compress = path.suffix == ".gz" if compress is None else compress
    path.write_bytes(gzip.compress(body) if compress else body)
    return path


def make_fashion(root, n=5, labels=None, gz=True, prefix="train"):
    root.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = np.arange(n) % 10 if labels is None else np.asarray(labels)
    write_idx(root / f"{prefix}-images-idx3-ubyte{ext}", 0x803, (n, 28, 28), images.tobytes())
    write_idx(root / f"{prefix}-labels-idx1-ubyte{ext}", 0x801, (len(labels),),
              labels.astype(np.uint8).tobytes())
    return images, labels


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_small_valid_files(tmp_path, gz):
    images, labels = make_fashion(tmp_path, n=7, gz=gz)
    ds = datasets.FashionMNIST(root=tmp_path)
    np.testing.assert_array_equal(ds.data, images)
    np.testing.assert_array_equal(ds.targets, labels)
    make_fashion(tmp_path, n=3, gz=gz, prefix="t10k")
    assert len(datasets.FashionMNIST(root=tmp_path, train=False)) == 3


def test_fashion_mnist_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        datasets.FashionMNIST(root=tmp_path / "nowhere")
    make_fashion(tmp_path)
    os.remove(tmp_path / "train-labels-idx1-ubyte.gz")
    with pytest.raises(FileNotFoundError, match="train-labels-idx1-ubyte"):
        datasets.FashionMNIST(root=tmp_path)


def corrupt_cases():
    imgs = "train-images-idx3-ubyte.gz"
    labs = "train-labels-idx1-ubyte.gz"
    good_images = bytes(5 * 784)

    def bad_image_magic(root):
        write_idx(root / imgs, 0x801, (5, 28, 28), good_images)

    def bad_label_magic(root):
        write_idx(root / labs, 0x803, (5,), bytes(5))

    def truncated_images(root):
        write_idx(root / imgs, 0x803, (5, 28, 28), good_images[:-1])

    def overlong_labels(root):
        write_idx(root / labs, 0x801, (5,), bytes(6))

    def header_cut(root):
        write_idx(root / labs, 0x801, (), b"")

    def wrong_dims(root):
        write_idx(root / imgs, 0x803, (5, 27, 28), bytes(5 * 27 * 28))

    def count_mismatch(root):
        write_idx(root / labs, 0x801, (4,), bytes(4))

    def label_out_of_range(root):
        write_idx(root / labs, 0x801, (5,), bytes([0, 1, 10, 3, 4]))

    def truncated_gzip(root):
        blob = (root / imgs).read_bytes()
        (root / imgs).write_bytes(blob[: len(blob) // 2])

    def not_gzip(root):
        (root / imgs).write_bytes(b"this is not gzip data at all")

    return [
        (bad_image_magic, imgs, "magic number 0x00000801, expected 0x00000803"),
        (bad_label_magic, labs, "magic number 0x00000803, expected 0x00000801"),
        (truncated_images, imgs, "truncated"),
        (overlong_labels, labs, "longer than its header"),
        (header_cut, labs, "4 bytes is shorter than the 8-byte IDX header"),
        (wrong_dims, imgs, r"item dimensions \(27, 28\)"),
        (count_mismatch, labs, "4 labels but .* has 5 images"),
        (label_out_of_range, labs, "label 10 at index 2"),
        (truncated_gzip, imgs, "truncated gzip"),
        (not_gzip, imgs, "not a valid gzip"),
    ]


@pytest.mark.parametrize("corrupt,filename,message", corrupt_cases(),
                         ids=[c[0].__name__ for c in corrupt_cases()])
def test_fashion_mnist_corrupt_files(tmp_path, corrupt, filename, message):
    make_fashion(tmp_path, n=5)
    corrupt(tmp_path)
    with pytest.raises(ValueError, match=message) as info:
        datasets.FashionMNIST(root=tmp_path)
    assert filename in str(info.value)
