"""Layers: Linear, activations, Flatten, Dropout, Sequential, losses."""
import math
from collections import OrderedDict

from .. import _C, _ops
from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter


class Linear(Module):
    """y = x @ weight.T + bias, initialized as torch.nn.Linear
    (Kaiming-uniform weight with a = sqrt(5), bias U(-1/sqrt(in), 1/sqrt(in)))."""

    def __init__(self, in_features, out_features, bias=True, dtype=_C.dtype.float32):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = Parameter(_C.zeros([self.out_features, self.in_features], dtype))
        self.bias = Parameter(_C.zeros([self.out_features], dtype)) if bias else None
        if not bias:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class _Activation(Module):
    _fn = None

    def forward(self, x):
        return type(self)._fn(x)


class ReLU(_Activation):
    _fn = staticmethod(_C.relu)


class Sigmoid(_Activation):
    _fn = staticmethod(_C.sigmoid)


class Tanh(_Activation):
    _fn = staticmethod(_C.tanh)


class GELU(_Activation):
    _fn = staticmethod(_C.gelu)


class SiLU(_Activation):
    _fn = staticmethod(_C.silu)


class Identity(Module):
    def forward(self, x):
        return x


class LeakyReLU(Module):
    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return _C.leaky_relu(x, self.negative_slope)


class Softmax(Module):
    def __init__(self, dim=-1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return _C.softmax(x, self.dim)


class LogSoftmax(Softmax):
    def forward(self, x):
        return _C.log_softmax(x, self.dim)


class Flatten(Module):
    """Flattens axes start_dim..end_dim (default: all but the batch axis)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return _C.flatten(x, self.start_dim, self.end_dim)


class Dropout(Module):
    def __init__(self, p=0.5):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Sequential(Module):
    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    def forward(self, x):
        mods = list(self._modules.values())
        i = 0
        while i < len(mods):
            m = mods[i]
            # Conv2d then ReLU: one convolution with the ReLU applied inside
            # (oneDNN post-op), the same values with one pass less over the output.
            if i + 1 < len(mods) and type(mods[i + 1]) is ReLU and getattr(m, "fuses_relu", False):
                x = m(x, activation="relu")
                i += 2
                continue
            x = m(x)
            i += 1
        return x

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Sequential(OrderedDict(list(self._modules.items())[i]))
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, m):
        self.add_module(str(len(self._modules)), m)
        return self


class ModuleList(Module):
    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, m):
        self.add_module(str(len(self._modules)), m)
        return self

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class _Loss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got '{reduction}'")
        self.reduction = reduction


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of logits [N, C] against class indices [N] (one fused op)."""

    def forward(self, logits, target):
        return F.cross_entropy(logits, target, reduction=self.reduction)


class NLLLoss(_Loss):
    """Negative log-likelihood of log-probabilities [N, C] at class indices [N]."""

    def forward(self, log_probs, target):
        return F.nll_loss(log_probs, target, reduction=self.reduction)


class MSELoss(_Loss):
    def forward(self, pred, target):
        return F.mse_loss(pred, target, reduction=self.reduction)


__all__ = ["Linear", "ReLU", "Sigmoid", "Tanh", "GELU", "SiLU", "Identity", "LeakyReLU", "Softmax",
           "LogSoftmax", "Flatten", "Dropout", "Sequential", "ModuleList", "CrossEntropyLoss", "NLLLoss",
           "MSELoss"]
_ = _ops
