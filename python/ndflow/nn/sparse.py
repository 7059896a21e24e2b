"""Embedding layers over the embedding op (ops/norm.cc)."""
from .. import _C
from ..autograd import no_grad
from . import init
from .module import Module
from .parameter import Parameter

__all__ = ["Embedding"]


def _padding_index(padding_idx, num_embeddings):
    if padding_idx is None:
        return None
    p = int(padding_idx)
    if not -num_embeddings <= p < num_embeddings:
        raise ValueError(f"Embedding: padding_idx {padding_idx} is out of range for {num_embeddings} embeddings")
    return p + num_embeddings if p < 0 else p


class Embedding(Module):
    """A lookup table weight [num_embeddings, embedding_dim], initialized
    N(0, 1) as torch.nn.Embedding, with the padding_idx row zero. The weight
    gradient is dense but nonzero only in the rows looked up, and never in
    the padding row."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None, norm_type=2.0,
                 scale_grad_by_freq=False, sparse=False, _weight=None, _freeze=False, dtype=_C.dtype.float32):
        super().__init__()
        if max_norm is not None or scale_grad_by_freq or sparse:
            raise NotImplementedError("Embedding: max_norm, scale_grad_by_freq and sparse are not supported")
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        self.padding_idx = _padding_index(padding_idx, self.num_embeddings)
        if _weight is None:
            self.weight = Parameter(_C.zeros([self.num_embeddings, self.embedding_dim], dtype),
                                    requires_grad=not _freeze)
            self.reset_parameters()
        else:
            if list(_weight.shape) != [self.num_embeddings, self.embedding_dim]:
                raise ValueError(f"Embedding: _weight has shape {list(_weight.shape)}, expected "
                                 f"{[self.num_embeddings, self.embedding_dim]}")
            self.weight = Parameter(_weight, requires_grad=not _freeze)

    def reset_parameters(self):
        init.normal_(self.weight)
        self._zero_padding_row()

    def _zero_padding_row(self):
        if self.padding_idx is not None:
            with no_grad():
                self.weight[self.padding_idx] = 0.0

    def forward(self, indices):
        return _C.embedding(self.weight, indices, self.padding_idx)

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, padding_idx=None, **kw):
        """An Embedding whose weight is (a copy of) ``embeddings`` [V, D]; frozen (no grad) by default."""
        if embeddings.ndim != 2:
            raise ValueError(f"Embedding.from_pretrained: embeddings must be 2-d, got shape {list(embeddings.shape)}")
        v, d = embeddings.shape
        return cls(v, d, padding_idx=padding_idx, _weight=embeddings.detach().clone(), _freeze=freeze,
                   dtype=embeddings.dtype, **kw)

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        return s + (f", padding_idx={self.padding_idx}" if self.padding_idx is not None else "")
