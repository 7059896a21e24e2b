"""The helpers of ndflow.embedding's max_norm and scale_grad_by_freq
(torch.embedding_renorm_ and per-row counts), built from registered ops so
that they also run inside traced graphs. Used by _ops.embedding."""
import numbers

import numpy as np

from . import _C
from ._C import dtype


class _EmbeddingNoGrad:
    """Grad mode off for the in-place renormalization (as torch's no_grad)."""

    def __enter__(self):
        self.prev = _C.is_grad_enabled()
        _C.set_grad_enabled(False)

    def __exit__(self, *exc):
        _C.set_grad_enabled(self.prev)


def _embedding_count_dtype(weight):
    """The dtype the per-row counts, norms and scales are computed in."""
    return weight.dtype if weight.dtype in (dtype.float32, dtype.float64) else dtype.float32


def _embedding_counts(flat, num_rows, ct, like):
    """How often each of the num_rows rows occurs in the 1-d indices ``flat``: [num_rows] of dtype ct."""
    zero = _C.broadcast_to(_C.cast(_C.scalar_like(0.0, like), ct), [num_rows])
    return _C.scatter_add(zero, 0, flat, _C.cast(_C.ones_like(flat), ct))


def _embedding_check_max_norm(max_norm, norm_type):
    bad = isinstance(max_norm, (bool, np.bool_)) or not isinstance(max_norm, numbers.Real)
    if bad or not max_norm >= 0:  # also rejects NaN
        raise ValueError(f"embedding: max_norm must be a non-negative number (or None), got {max_norm!r}")
    if isinstance(norm_type, (bool, np.bool_)) or not isinstance(norm_type, numbers.Real) or norm_type != norm_type:
        raise ValueError(f"embedding: norm_type must be a number (p of the p-norm, inf for the max), "
                         f"got {norm_type!r}")


def _embedding_renorm_(weight, flat, max_norm, norm_type):
    """torch.embedding_renorm_: each row of weight that ``flat`` references and whose norm_type-norm
    exceeds max_norm is scaled in place by max_norm / (norm + 1e-7); other rows stay bit for bit. Built
    from ops (a whole-table pass, then assign), so it also runs in a traced graph on a Variable."""
    if _C.is_tracing() and (weight.is_symbolic or not weight.is_variable):
        what = ("a tensor computed inside the function" if weight.is_symbolic else
                "a plain tensor, which the trace would bake in as a constant")
        raise NotImplementedError(
            f"embedding(max_norm=...) inside @ndflow.function renormalizes the weight in place, which a traced "
            f"graph can do only to a Variable (an nn.Parameter or a registered buffer); this weight is {what}. "
            "Make the weight an nn.Parameter, or call embedding with max_norm outside the traced function "
            "(or renormalize the rows yourself there and pass max_norm=None).")
    v = int(weight.shape[0])
    ct = _embedding_count_dtype(weight)
    p = float(norm_type)
    with _EmbeddingNoGrad():
        w = weight if weight.dtype == ct else _C.cast(weight, ct)
        if p == 2.0:
            norm = _C.sqrt(_C.sum(_C.square(w), [1]))
        elif p == 1.0:
            norm = _C.sum(_C.abs(w), [1])
        elif p == float("inf"):
            norm = _C.max(_C.abs(w), [1])
        elif p == float("-inf"):
            norm = _C.min(_C.abs(w), [1])
        elif p == 0.0:  # torch's 0-"norm": the number of nonzero entries
            norm = _C.sum(_C.cast(_C.ne(w, _C.scalar_like(0.0, w)), ct), [1])
        else:
            norm = _C.pow(_C.sum(_C.pow(_C.abs(w), _C.scalar_like(p, w)), [1]), _C.scalar_like(1.0 / p, w))
        used = _C.gt(_embedding_counts(flat, v, ct, weight), _C.scalar_like(0.0, norm))
        over = _C.logical_and(used, _C.gt(norm, _C.scalar_like(float(max_norm), norm)))
        scale = _C.div(_C.scalar_like(float(max_norm), norm), _C.add(norm, _C.scalar_like(1e-7, norm)))
        scale = _C.where(over, scale, _C.ones_like(norm))
        if scale.dtype != weight.dtype:
            scale = _C.cast(scale, weight.dtype)
        _C.assign(weight, _C.mul(weight, _C.unsqueeze(scale, 1)))
