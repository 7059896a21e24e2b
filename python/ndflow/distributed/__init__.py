"""Data-parallel training over MPI (DESIGN.md §7; C++: distributed/).

Launched by ``mpirun -np N python train.py``, every process is one rank of an
N-rank world; started plainly, a process is a world of one and every
collective is a no-op (all_gather adds a leading axis of 1). MPI is
initialized only under mpirun (or NDFLOW_MPI=1), once, and finalized at exit.

    import ndflow.distributed as dist
    dist.init()
    model = dist.DataParallel(MLP())            # parameters broadcast from rank 0
    sampler = dist.DistributedSampler(train_set, shuffle=True, seed=0)
    loader = ndflow.data.DataLoader(train_set, batch_size=64, sampler=sampler)
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(); loss.backward()
        model.sync_gradients()                  # bucketed mean allreduce of the grads
        opt.step()

Collectives work in place on host tensors (f32, f64, i32, i64, u8,
contiguous) and every rank must issue the same ones in the same order: each
call first checks that (a tiny allreduce of its signature) and a mismatch is
a ValueError listing each rank's call. Under MPI, init() makes an uncaught
exception print its traceback and abort the whole job (MPI_Abort), so the
other ranks do not hang waiting for the dead one.
"""
import sys
import traceback

from .. import _C

_d = _C._distributed
_hook_installed = False


def init():
    """Joins the cluster (MPI under mpirun; otherwise a world of one). Idempotent."""
    global _hook_installed
    _d.init()
    if not _hook_installed and _d.uses_mpi() and _d.world_size() > 1:
        _hook_installed = True
        previous = sys.excepthook

        def abort_on_uncaught(kind, value, tb):
            try:
                previous(kind, value, tb)
            finally:
                _d.abort(f"uncaught {kind.__name__}: {value}", 1)

        sys.excepthook = abort_on_uncaught


def is_initialized():
    return _d.is_initialized()


def is_mpi():
    """Whether this process runs on MPI (launched by mpirun)."""
    init()
    return _d.uses_mpi()


def get_rank():
    init()
    return _d.rank()


def get_world_size():
    init()
    return _d.world_size()


def _op(op):
    if not isinstance(op, str):
        raise TypeError(f"op must be 'sum', 'mean' or 'max', got {type(op).__name__}")
    return op.lower()


def all_reduce(tensor, op="sum"):
    """Reduces ``tensor`` over all ranks, in place ("sum", "mean" or "max");
    returns it."""
    init()
    _d.all_reduce(tensor, _op(op))
    return tensor


def all_reduce_coalesced(tensors, op="sum"):
    """all_reduce of several tensors of one dtype as a single message."""
    init()
    _d.all_reduce_coalesced(list(tensors), _op(op))
    return tensors


def broadcast(tensor, src=0):
    """Overwrites ``tensor`` with rank ``src``'s, in place; returns it."""
    init()
    _d.broadcast(tensor, int(src))
    return tensor


def all_gather(tensor):
    """Every rank's ``tensor`` stacked along a new first axis: [world_size, *shape]."""
    init()
    return _d.all_gather(tensor)


def barrier():
    init()
    _d.barrier()


def set_check_collectives(on):
    """Whether each collective first checks that every rank issued the same
    one (default on; costs one tiny allreduce per call)."""
    init()
    _d.set_check_collectives(bool(on))


def abort(message="", exit_code=1):
    """Prints ``message`` and ends the whole job (MPI_Abort under MPI)."""
    sys.stdout.flush()
    sys.stderr.flush()
    _d.abort(str(message), int(exit_code))


def print_exception_and_abort(exc):
    """For handlers that catch an exception: prints it and aborts the job."""
    traceback.print_exception(type(exc), exc, exc.__traceback__)
    abort(f"{type(exc).__name__}: {exc}")


from .data_parallel import DataParallel  # noqa: E402
from .sampler import DistributedSampler  # noqa: E402

__all__ = ["init", "is_initialized", "is_mpi", "get_rank", "get_world_size", "all_reduce",
           "all_reduce_coalesced", "broadcast", "all_gather", "barrier", "set_check_collectives",
           "abort", "DataParallel", "DistributedSampler"]
