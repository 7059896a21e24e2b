"""Process-wide settings of the engine.

    import ndflow as nd
    nd.config.set_num_cpu_devices(2)   # logical devices cpu:0 and cpu:1
"""
from . import _C


def set_num_cpu_devices(n):
    """Logical CPU devices this process exposes to the placer (default 1, or
    the environment variable NDFLOW_NUM_CPU_DEVICES). Each runs its part of a
    graph on its own executor thread, joined to the others by send/recv, so
    multi-device placement can be used and tested on one machine. Affects
    graphs compiled afterwards."""
    _C.set_num_cpu_devices(int(n))


def get_num_cpu_devices():
    return _C.num_cpu_devices()
