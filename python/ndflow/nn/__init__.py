"""Neural-network layers (torch.nn spellings) over ndflow's ops."""
from . import functional, init
from .layers import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .rnn import *  # noqa: F401,F403
from .sparse import *  # noqa: F401,F403
from .module import Module
from .parameter import Parameter
