"""DataParallel: eager data-parallel training of an nn.Module over MPI."""
from .. import _C
from ..autograd import no_grad
from ..nn.module import Module

_d = _C._distributed


class DataParallel(Module):
    """Wraps ``module`` for data-parallel training on every rank.

    At construction the parameters and buffers of rank 0 are broadcast to
    every rank, so all replicas start equal. Each rank then runs its own
    shard of the batch; after ``loss.backward()`` call ``sync_gradients()``
    (before ``optimizer.step()``): it averages every gradient over the ranks.
    N ranks with per-rank batch b then take the same steps as one process
    with batch N·b (for a loss that is a mean over the batch).

    Gradients are grouped into buckets of about ``bucket_mb`` MB (parameters
    in reverse registration order, roughly the order backward produces them;
    one dtype per bucket) and each bucket is reduced as one message. The
    eager autograd has no gradient hooks yet, so the buckets are reduced
    after backward rather than overlapping with it. A parameter that got no
    gradient on some rank gets zeros there; one no rank touched keeps None.

    ``state_dict()`` keys carry the ``module.`` prefix, as in PyTorch.
    """

    def __init__(self, module, bucket_mb=25, broadcast_buffers=True):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DataParallel wraps an nn.Module, got {type(module).__name__}")
        if not (isinstance(bucket_mb, (int, float)) and bucket_mb > 0):
            raise ValueError(f"bucket_mb must be a positive number, got {bucket_mb!r}")
        from . import init
        init()
        self.module = module
        object.__setattr__(self, "bucket_bytes", int(bucket_mb * (1 << 20)))
        object.__setattr__(self, "broadcast_buffers", bool(broadcast_buffers))
        object.__setattr__(self, "world_size", _d.world_size())
        self._broadcast_state()
        object.__setattr__(self, "_buckets", self._make_buckets())

    # ------------------------------------------------------------ setup
    def _broadcast_state(self):
        tensors = [p for p in self.module.parameters()]
        if self.broadcast_buffers:
            tensors += [b for b in self.module.buffers() if b is not None]
        if self.world_size == 1:
            return
        with no_grad():
            for t in tensors:
                if t.is_contiguous():
                    _d.broadcast(t, 0)
                else:
                    c = t.contiguous()
                    _d.broadcast(c, 0)
                    t.copy_(c)

    def _make_buckets(self):
        """Lists of parameter indices, reverse order, split by size and dtype."""
        params = [p for p in self.module.parameters() if p.requires_grad]
        object.__setattr__(self, "_params", params)
        buckets, current, size, dtype = [], [], 0, None
        for i in reversed(range(len(params))):
            p = params[i]
            nbytes = p.numel() * p.dtype.itemsize
            if current and (p.dtype != dtype or size + nbytes > self.bucket_bytes):
                buckets.append(current)
                current, size = [], 0
            current.append(i)
            size += nbytes
            dtype = p.dtype
        if current:
            buckets.append(current)
        return buckets

    @property
    def buckets(self):
        """The parameter buckets, in the order they are reduced."""
        return [[self._params[i] for i in b] for b in self._buckets]

    # ------------------------------------------------------------ running
    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def sync_gradients(self):
        """Averages every parameter's gradient over the ranks, in place (a
        mean allreduce per bucket). Call it after backward, before the step."""
        if self.world_size == 1:
            return
        params = self._params
        # Which parameters have a gradient on any rank: every rank must send
        # the same buckets, so a gradient missing here becomes zeros.
        have = _C.from_numpy(_have_mask(params))
        _d.all_reduce(have, "max")
        have = have.numpy()
        with no_grad():
            for bucket in self._buckets:
                grads = []
                for i in bucket:
                    if not have[i]:
                        continue
                    p = params[i]
                    g = p.grad
                    if g is None:
                        g = _C.zeros_like(p)
                        p.grad = g
                    elif not g.is_contiguous():
                        g = g.contiguous()
                        p.grad = g
                    grads.append(g)
                if grads:
                    _d.all_reduce_coalesced(grads, "mean")


def _have_mask(params):
    import numpy as np
    return np.fromiter((p.grad is not None for p in params), dtype=np.uint8, count=len(params))
