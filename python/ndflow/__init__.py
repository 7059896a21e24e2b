"""ndflow: a dataflow-graph deep learning engine.

Tensors run eagerly with autograd, or trace into static graphs with
``@ndflow.function``; both paths use the same C++ ops (DESIGN.md §5).

    import ndflow as nd
    x = nd.tensor([[1.0, 2.0]], requires_grad=True)
    (x * x).sum().backward()
    x.grad            # Tensor([[2, 4]], ...)
"""
from . import _C
from ._C import Tensor, TracingError, Generator, from_numpy, from_dlpack, dtype
from ._ops import *  # noqa: F401,F403  (the op functions)
from . import _tensor  # noqa: F401  (installs Tensor methods and operators)
from .autograd import no_grad, enable_grad, set_grad_enabled, is_grad_enabled, grad
from .function import function, Function, save, load
from . import ops
from .checkpoint import save_checkpoint, load_checkpoint
from . import nn, optim, data, datasets, config
from .placement import device, placement_report

__version__ = "0.1.0"

float32 = float = dtype.float32
float64 = double = dtype.float64
float16 = half = dtype.float16
bfloat16 = dtype.bfloat16
int32 = dtype.int32
int64 = long = dtype.int64
uint8 = dtype.uint8
bool = dtype.bool  # noqa: A001  (ndflow.bool, like torch.bool)


def set_num_threads(n):
    """Threads used inside kernels (intra-op); default: the machine's cores."""
    _C.set_num_threads(int(n))


def get_num_threads():
    return _C.get_num_threads()


def is_tensor(x):
    return isinstance(x, Tensor)
