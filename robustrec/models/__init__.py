"""Scoring models on torchrec embedding tables. ``MODELS`` lists the names the CLI accepts."""

import scipy.sparse as sp

from robustrec.models.lightgcn import LightGCN, normalized_adjacency
from robustrec.models.mf import PREFERENCE, MatrixFactorization, ModelOutput

MODELS = ("mf", "lightgcn")
# Models whose structure depends on the training matrix (they need ``train=`` at construction).
GRAPH_MODELS = ("lightgcn",)

__all__ = ["GRAPH_MODELS", "MODELS", "PREFERENCE", "LightGCN", "MatrixFactorization", "ModelOutput",
           "build_model", "normalized_adjacency"]


def build_model(name: str, n_users: int, n_items: int, dim: int, *, train: sp.spmatrix | None = None, **kwargs):
    """Build the model called ``name`` (one of ``MODELS``).

    ``train`` (n_users, n_items) is the training matrix; graph models (``GRAPH_MODELS``) require it.
    """
    if name == "mf":
        return MatrixFactorization(n_users, n_items, dim, **kwargs)
    if name == "lightgcn":
        if train is None:
            raise ValueError("model 'lightgcn' needs the training matrix: build_model(..., train=matrix)")
        if train.shape != (n_users, n_items):
            raise ValueError(f"train has shape {train.shape}, expected {(n_users, n_items)}")
        return LightGCN(train, dim, **kwargs)
    raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")
