"""Normalization layers (BatchNorm1d/2d, LayerNorm) over the batch_norm and
layer_norm ops (ops/norm.cc), with torch.nn's arguments, buffers and
state-dict keys.

The running statistics and num_batches_tracked are buffers, i.e. Variables:
in a compiled (``@ndflow.function``) training step their updates are graph
nodes writing those Variables, so eager and compiled steps leave the same
statistics behind.
"""
import numbers

from .. import _C
from ..autograd import no_grad
from . import init
from .module import Module
from .parameter import Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "LayerNorm"]


class _BatchNorm(Module):
    _ranks = ()  # accepted input ranks

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 dtype=_C.dtype.float32):
        super().__init__()
        num_features = int(num_features)
        if num_features <= 0:
            raise ValueError(f"{type(self).__name__}: num_features must be positive, got {num_features}")
        if momentum is not None and not 0 <= momentum <= 1:
            raise ValueError(f"{type(self).__name__}: momentum must be in [0, 1] or None, got {momentum}")
        self.num_features, self.eps, self.momentum = num_features, float(eps), momentum
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        if self.affine:
            self.weight = Parameter(_C.ones([num_features], dtype))
            self.bias = Parameter(_C.zeros([num_features], dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            self.register_buffer("running_mean", _C.zeros([num_features], dtype))
            self.register_buffer("running_var", _C.ones([num_features], dtype))
            self.register_buffer("num_batches_tracked", _C.zeros([], _C.dtype.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self):
        if self.track_running_stats:
            with no_grad():
                self.running_mean.fill_(0.0)
                self.running_var.fill_(1.0)
                self.num_batches_tracked.fill_(0)

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def _check_input_dim(self, x):
        if x.ndim not in self._ranks:
            want = " or ".join(f"{r}D" for r in self._ranks)
            raise ValueError(f"{type(self).__name__}: expected {want} input (got {x.ndim}D input of shape "
                             f"{list(x.shape)})")
        if x.shape[1] != self.num_features and x.shape[1] >= 0:
            raise ValueError(f"{type(self).__name__}: expected {self.num_features} channels (dim 1), got input "
                             f"of shape {list(x.shape)}")

    def forward(self, x):
        self._check_input_dim(x)
        # As torch: batch statistics in training, or always without running statistics.
        use_batch_stats = self.training or not self.track_running_stats
        update = self.training and self.track_running_stats
        if update:
            _C.assign_add(self.num_batches_tracked, _C.ones([], _C.dtype.int64))
        if update and self.momentum is None:
            return self._cumulative(x)
        momentum = 0.0 if self.momentum is None else float(self.momentum)
        stats = (self.running_mean, self.running_var) if self.track_running_stats else (None, None)
        return _C.batch_norm(x, self.weight, self.bias, stats[0], stats[1], use_batch_stats, momentum, self.eps)

    def _cumulative(self, x):
        """momentum=None: the running statistics are the plain average over all
        batches so far (factor 1 / num_batches_tracked, read from the Variable,
        so a compiled step never bakes it in)."""
        inputs = [x] + ([self.weight, self.bias] if self.affine else [])
        y, mean, var = _C.call_op("batch_norm", inputs, {"eps": self.eps})
        n = 1
        for i, d in enumerate(x.shape):
            if i != 1:
                n *= d
        rm, rv = self.running_mean, self.running_var
        with no_grad():
            factor = _C.div(_C.ones([], rm.dtype), _C.cast(self.num_batches_tracked, rm.dtype))
            unbiased = _C.mul(_C.cast(var, rv.dtype), _C.scalar(n / (n - 1), rv.dtype))
            _C.assign(rm, _C.add(rm, _C.mul(_C.sub(_C.cast(mean, rm.dtype), rm), factor)))
            _C.assign(rv, _C.add(rv, _C.mul(_C.sub(unbiased, rv), factor)))
        return y

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalization of [N, C] or [N, C, L] inputs per channel C."""
    _ranks = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalization of [N, C, H, W] images per channel C."""
    _ranks = (4,)


class LayerNorm(Module):
    """Normalizes over the trailing ``normalized_shape`` dims, then an
    elementwise affine map (weight ones, bias zeros) of that shape."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, dtype=_C.dtype.float32):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(int(d) for d in normalized_shape)
        self.eps, self.elementwise_affine = float(eps), bool(elementwise_affine)
        if self.elementwise_affine:
            self.weight = Parameter(_C.ones(list(self.normalized_shape), dtype))
            if bias:
                self.bias = Parameter(_C.zeros(list(self.normalized_shape), dtype))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self):
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, x):
        return _C.layer_norm(x, list(self.normalized_shape), self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
