"""Scoring models on torchrec embedding tables. ``MODELS`` lists the names the CLI accepts."""

from robustrec.models.mf import PREFERENCE, MatrixFactorization, ModelOutput

MODELS = ("mf",)

__all__ = ["MODELS", "PREFERENCE", "MatrixFactorization", "ModelOutput", "build_model"]


def build_model(name: str, n_users: int, n_items: int, dim: int, **kwargs):
    """Build the model called ``name`` (one of ``MODELS``)."""
    if name == "mf":
        return MatrixFactorization(n_users, n_items, dim, **kwargs)
    raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")
