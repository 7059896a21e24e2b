"""Functional collectives: ops that return their result (ops/collective.h).

Unlike ``ndflow.distributed.all_reduce`` (in place, eager only), these work
both eagerly and inside ``@ndflow.function`` / graph scopes, where they become
graph nodes that the executor runs asynchronously and issues in the compiled
plan's order on every rank. They are differentiable (sum and mean reduce the
gradient the same way; broadcast sends it to the root; all_gather hands each
rank its row), as PyTorch's ``torch.distributed.nn.functional``.

    import ndflow.distributed.functional as fc

    @ndflow.function
    def step(x):
        return fc.all_reduce(model(x).sum(), "mean")

In a world of one they return copies.
"""
from .. import _C
from . import init

__all__ = ["all_reduce", "all_reduce_coalesced", "broadcast", "all_gather"]


def _op(op):
    if not isinstance(op, str):
        raise TypeError(f"op must be 'sum', 'mean' or 'max', got {type(op).__name__}")
    return op.lower()


def all_reduce(tensor, op="sum"):
    """``tensor`` reduced over every rank ("sum", "mean" or "max"), as a new tensor."""
    init()
    return _C.call_op("all_reduce", [tensor], {"op": _op(op)})[0]


def all_reduce_coalesced(tensors, op="sum"):
    """all_reduce of several tensors of one dtype as one message; returns a list."""
    init()
    tensors = list(tensors)
    if not tensors:
        return []
    return list(_C.call_op("all_reduce_coalesced", tensors, {"op": _op(op)}))


def broadcast(tensor, src=0):
    """Rank ``src``'s ``tensor`` on every rank, as a new tensor."""
    init()
    return _C.call_op("broadcast", [tensor], {"root": int(src)})[0]


def all_gather(tensor):
    """Every rank's ``tensor`` stacked along a new first axis: [world_size, *shape]."""
    init()
    return _C.call_op("all_gather", [tensor], {})[0]
