"""Optimizers (torch.optim spellings) over the fused update ops of ops/optim.cc."""
from . import lr_scheduler
from .optimizer import Optimizer
from .optimizers import SGD, Adagrad, RMSprop, Adam, AdamW

RMSProp = RMSprop
