"""Neural-network layers (torch.nn spellings) over ndflow's ops."""
from . import functional, init
from .layers import *  # noqa: F401,F403
from .module import Module
from .parameter import Parameter
