"""Device placement of graphs (DESIGN.md §6 step 3; C++: runtime/placer.h).

Inside ``with ndflow.device(name):`` every graph node built — while tracing
an ``@ndflow.function`` or inside a GraphScope — requests that device. Names
are ``/worker:N/cpu:K`` or shorter: ``cpu:1`` (this program's default
worker), ``worker:1/cpu:0``, ``worker:1``. Scopes nest; the innermost wins.
Eager ops are not affected: every logical CPU device shares this process's
memory, so eager tensors simply live on the CPU.

    nd.config.set_num_cpu_devices(2)
    @nd.function
    def f(x):
        with nd.device("cpu:0"):
            h = layer1(x)
        with nd.device("cpu:1"):
            return layer2(h)
    f(x)
    print(nd.placement_report(f))   # each node's device and why; bytes crossing
"""
from . import _C


class device:
    """Context manager: graph nodes built inside request ``name``."""

    def __init__(self, name):
        if not isinstance(name, str):
            raise TypeError(f"ndflow.device takes a device name such as 'cpu:1' or 'worker:1/cpu:0', "
                            f"got {type(name).__name__}")
        self.name = _C.canonical_device_name(name) if name else ""
        self._scope = _C.DeviceScope(self.name)

    def __enter__(self):
        self._scope.__enter__()
        return self

    def __exit__(self, *exc):
        self._scope.__exit__(*exc)
        return False

    def __repr__(self):
        return f"ndflow.device({self.name!r})"


def _compiled_of(f):
    entry = getattr(f, "_last", None)
    if entry is None:
        raise RuntimeError("placement_report: call the function once first (it is placed when it is compiled)")
    return entry.compiled


def placement_report(f):
    """The placement of the compiled graph of ``f``'s latest call, as text:
    one line per node (its device and the reason), then the tensors and
    bytes crossing each device boundary per step, and the send/recv count."""
    return _compiled_of(f).placement_report()


def placement(f):
    """{node name: device} of the compiled graph of ``f``'s latest call."""
    return _compiled_of(f).placement()


def transfer_counts(f):
    """(send/recv pairs the partitioner made, crossings the placement reports)."""
    return _compiled_of(f).transfer_counts()
