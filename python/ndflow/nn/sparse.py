"""Embedding layers over the embedding op (ops/norm.cc)."""
from .. import _C
from .._ops import _embedding_check_max_norm as _check_max_norm, embedding
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
    the padding row.

    As torch.nn.Embedding: ``max_norm`` renormalizes, in place and before
    each lookup, every looked-up row whose ``norm_type``-norm exceeds it
    (see ndflow.nn.functional.embedding; inside @ndflow.function this works
    because the weight is a Variable); ``scale_grad_by_freq`` divides each
    row's gradient by how often its index occurs in the mini-batch.
    ``sparse=True`` is refused: ndflow has no sparse tensors (the dense
    gradient is already nonzero only in the rows looked up; the parameter
    server's push_rows sends just those rows)."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None, norm_type=2.0,
                 scale_grad_by_freq=False, sparse=False, _weight=None, _freeze=False, dtype=_C.dtype.float32):
        super().__init__()
        if sparse:
            raise NotImplementedError(
                "Embedding: sparse=True is not supported: ndflow has no sparse tensors, so it cannot produce a "
                "sparse weight gradient. Use sparse=False: the dense gradient is already nonzero only in the "
                "rows looked up (and zero in padding_idx); to send only those rows, use the parameter server's "
                "push_rows (ndflow.distributed.ps).")
        if max_norm is not None:
            _check_max_norm(max_norm, norm_type)
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        self.padding_idx = _padding_index(padding_idx, self.num_embeddings)
        self.max_norm = None if max_norm is None else float(max_norm)
        self.norm_type = float(norm_type)
        self.scale_grad_by_freq = bool(scale_grad_by_freq)
        self.sparse = False
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
        if self.max_norm is None and not self.scale_grad_by_freq:
            return _C.embedding(self.weight, indices, self.padding_idx)
        return embedding(indices, self.weight, self.padding_idx, self.max_norm, self.norm_type,
                         self.scale_grad_by_freq)

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, padding_idx=None, max_norm=None, norm_type=2.0,
                        scale_grad_by_freq=False, sparse=False, **kw):
        """An Embedding whose weight is (a copy of) ``embeddings`` [V, D]; frozen (no grad) by default.
        max_norm, norm_type, scale_grad_by_freq and sparse are the constructor's (as torch)."""
        if embeddings.ndim != 2:
            raise ValueError(f"Embedding.from_pretrained: embeddings must be 2-d, got shape {list(embeddings.shape)}")
        v, d = embeddings.shape
        return cls(v, d, padding_idx=padding_idx, max_norm=max_norm, norm_type=norm_type,
                   scale_grad_by_freq=scale_grad_by_freq, sparse=sparse, _weight=embeddings.detach().clone(),
                   _freeze=freeze, dtype=embeddings.dtype, **kw)

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        if self.max_norm is not None:
            s += f", max_norm={self.max_norm}"
        if self.norm_type != 2.0:
            s += f", norm_type={self.norm_type}"
        if self.scale_grad_by_freq:
            s += ", scale_grad_by_freq=True"
        return s
