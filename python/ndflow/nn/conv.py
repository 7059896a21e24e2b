"""Convolution and pooling layers (torch.nn spellings) over the conv2d,
max_pool2d and avg_pool2d ops (ops/conv.cc), on NCHW images."""
import math
import numbers

from .. import _C, _ops
from . import init
from .module import Module
from .parameter import Parameter


def _pair(v, name):
    if isinstance(v, numbers.Integral):
        return (int(v), int(v))
    v = tuple(int(a) for a in v)
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a (height, width) pair, got {v}")
    return v


def _conv2d(x, weight, bias, stride, padding, dilation, groups, activation="none"):
    inputs = [x, weight] + ([] if bias is None else [bias])
    attrs = {"stride": list(stride), "padding": list(padding), "dilation": list(dilation), "groups": int(groups)}
    if activation != "none":
        attrs["activation"] = activation
    return _C.call_op("conv2d", inputs, attrs)[0]


class Conv2d(Module):
    """2-d convolution (cross-correlation) of x [N, C, H, W] with weight
    [out_channels, in_channels / groups, kh, kw] plus bias [out_channels],
    initialized as torch.nn.Conv2d: Kaiming-uniform weight with a = sqrt(5),
    bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = in/groups * kh * kw.
    Only zero padding (padding_mode='zeros') and numeric padding."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", dtype=_C.dtype.float32):
        super().__init__()
        in_channels, out_channels, groups = int(in_channels), int(out_channels), int(groups)
        if groups <= 0 or in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: in_channels ({in_channels}) and out_channels ({out_channels}) must be "
                             f"divisible by groups ({groups})")
        if padding_mode != "zeros":
            raise NotImplementedError(f"Conv2d: padding_mode '{padding_mode}' (only 'zeros')")
        if isinstance(padding, str):
            raise NotImplementedError("Conv2d: string padding ('same'/'valid'); give the sizes")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        self.dilation = _pair(dilation, "dilation")
        self.padding_mode = padding_mode
        self.weight = Parameter(_C.zeros([out_channels, in_channels // groups, *self.kernel_size], dtype))
        if bias:
            self.bias = Parameter(_C.zeros([out_channels], dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.kernel_size[0] * self.kernel_size[1]
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    fuses_relu = True  # nn.Sequential hands a following ReLU to forward(activation="relu")

    def forward(self, x, activation="none"):
        """``activation='relu'`` applies ReLU inside the convolution (one
        fused op); nn.Sequential's Conv2d, ReLU pairs may use it."""
        return _conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups,
                       activation)

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class _Pool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        self.ceil_mode = bool(ceil_mode)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"{type(self).__name__}: padding {self.padding} must be at most half the kernel "
                             f"size {self.kernel_size}")

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"ceil_mode={self.ceil_mode}")


class MaxPool2d(_Pool2d):
    """Maximum over kh x kw windows (padding counts as -inf), as torch.nn.MaxPool2d
    (without dilation or return_indices)."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        if _pair(dilation, "dilation") != (1, 1):
            raise NotImplementedError("MaxPool2d: dilation other than 1")
        if return_indices:
            raise NotImplementedError("MaxPool2d: return_indices")
        super().__init__(kernel_size, stride, padding, ceil_mode)

    def forward(self, x):
        return _ops.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode)


class AvgPool2d(_Pool2d):
    """Mean over kh x kw windows, as torch.nn.AvgPool2d (no divisor_override)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        if divisor_override is not None:
            raise NotImplementedError("AvgPool2d: divisor_override")
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.count_include_pad = bool(count_include_pad)

    def forward(self, x):
        return _ops.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                               self.count_include_pad)

    def extra_repr(self):
        return super().extra_repr() + f", count_include_pad={self.count_include_pad}"


__all__ = ["Conv2d", "MaxPool2d", "AvgPool2d"]
