"""DistributedSampler: each rank's share of a dataset, per epoch."""
import numpy as np

from ..data import Sampler


class DistributedSampler(Sampler):
    """The indices of rank ``rank`` out of ``num_replicas`` (defaults: this
    process's rank and the world size).

    Every epoch the dataset's indices (a permutation depending only on
    (seed, epoch) when ``shuffle``, else 0..n-1) are padded by wrapping
    around to a multiple of num_replicas (or cut to one, with
    ``drop_last``), and rank r takes positions r, r + num_replicas, ... So
    with shuffle=False and a per-rank batch b, the ranks' k-th batches
    together are exactly the k-th batch of size num_replicas·b of a
    sequential single-process run. ``seed`` must be the same on every rank.
    Each iteration uses the current epoch and then advances it, as
    data.RandomSampler; DataLoader calls ``set_epoch`` before each epoch.
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False):
        if num_replicas is None or rank is None:
            from . import get_rank, get_world_size
            num_replicas = get_world_size() if num_replicas is None else num_replicas
            rank = get_rank() if rank is None else rank
        if not isinstance(num_replicas, int) or num_replicas < 1:
            raise ValueError(f"num_replicas must be a positive int, got {num_replicas!r}")
        if not isinstance(rank, int) or not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank!r}")
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.epoch = 0
        n = len(dataset)
        if self.drop_last:
            self.num_samples = n // num_replicas
        else:
            self.num_samples = -(-n // num_replicas)
        self.total_size = self.num_samples * num_replicas

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)

    def _draw_indices(self) -> np.ndarray:
        n = len(self.dataset)
        if self.shuffle:
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, self.epoch])))
            idx = rng.permutation(n).astype(np.int64, copy=False)
        else:
            idx = np.arange(n, dtype=np.int64)
        self.epoch += 1
        if self.total_size > n:  # pad by wrapping around (repeatedly if n < num_replicas)
            idx = np.resize(idx, self.total_size) if n > 0 else idx
        else:
            idx = idx[: self.total_size]
        return idx[self.rank:self.total_size:self.num_replicas]

    def __iter__(self):
        return iter(self._draw_indices().tolist())

    def __len__(self):
        return self.num_samples
