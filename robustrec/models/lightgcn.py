"""LightGCN (He et al., SIGIR 2020) on the same torchrec tables as MF.

The tables hold the *ego* embeddings E⁰ (users and items). Scores are dot products of
the layer mean ``(E⁰ + Â E⁰ + … + Â^K E⁰) / (K + 1)``, with Â = D^{-1/2} A D^{-1/2} the
symmetrically normalised adjacency of the bipartite user-item graph of the TRAINING
matrix (eq. 7-8 of the paper). Every head (e.g. NBPO's "phi") is propagated alike.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from robustrec.models.mf import PREFERENCE, ModelOutput, batch_sq_norm
from robustrec.models.tables import SideTables


def normalized_adjacency(train: sp.spmatrix) -> sp.csr_matrix:
    """Â = D^{-1/2} [[0, R], [Rᵀ, 0]] D^{-1/2}: (n_users + n_items) square CSR; isolated nodes get 0 rows."""
    r = sp.csr_matrix(train, dtype=np.float32)
    r.data[:] = 1.0
    adj = sp.bmat([[None, r], [r.T, None]], format="csr", dtype=np.float32)
    degree = np.asarray(adj.sum(1)).ravel()
    inv_sqrt = np.zeros_like(degree)
    np.power(degree, -0.5, out=inv_sqrt, where=degree > 0)
    d = sp.diags(inv_sqrt)
    return sp.csr_matrix(d @ adj @ d, dtype=np.float32)


def _to_torch_sparse(matrix: sp.csr_matrix, device: torch.device) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is beta": CSR @ dense is the fastest CPU spmm
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr.astype(np.int64)),
            torch.from_numpy(matrix.indices.astype(np.int64)),
            torch.from_numpy(matrix.data.astype(np.float32)),
            size=matrix.shape,
            device=device,
        )


class LightGCN(nn.Module):
    """K-layer LightGCN over the training graph; ``forward``/``embedding_matrices`` as :class:`MatrixFactorization`.

    Args:
        train: (n_users, n_items) CSR of the training interactions (the graph).
        dim: embedding dimension.
        n_layers: propagation layers K (3 in the paper).
        heads, init_std, init_mean, head_dims, device: as :class:`~robustrec.models.mf.MatrixFactorization`.

    Each training step looks up the full ego tables (so the fused optimizer updates every row
    the gradient reaches) and propagates them: O(K · nnz · D) per batch, as in the paper's code.
    """

    def __init__(
        self,
        train: sp.spmatrix,
        dim: int = 64,
        *,
        n_layers: int = 3,
        heads: tuple[str, ...] = (PREFERENCE,),
        init_std: float = 0.1,
        init_mean: dict[str, float] | None = None,
        head_dims: dict[str, int] | None = None,
        device: torch.device | None = None,
    ) -> None:
        super().__init__()
        if PREFERENCE not in heads:
            raise ValueError(f"heads must include {PREFERENCE!r}, got {heads}")
        if n_layers < 0:
            raise ValueError(f"n_layers must be >= 0, got {n_layers}")
        self.n_users, self.n_items = train.shape
        self.dim, self.heads, self.n_layers = dim, tuple(heads), n_layers
        self.device = device or torch.device("cpu")
        self.user_tables = SideTables("user", self.n_users, dim, self.heads, init_std=init_std, init_mean=init_mean, head_dims=head_dims, device=device)
        self.item_tables = SideTables("item", self.n_items, dim, self.heads, init_std=init_std, init_mean=init_mean, head_dims=head_dims, device=device)
        self.adjacency = _to_torch_sparse(normalized_adjacency(train), self.device)
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None

    def propagate(self, ego: torch.Tensor) -> torch.Tensor:
        """(n_users + n_items, D) ego embeddings -> their layer mean."""
        layer, total = ego, ego
        for _ in range(self.n_layers):
            layer = self.adjacency @ layer
            total = total + layer
        return total / (self.n_layers + 1)

    def _ego(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        users = self.user_tables(torch.arange(self.n_users, device=self.device))
        items = self.item_tables(torch.arange(self.n_items, device=self.device))
        return users, items

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> ModelOutput:
        """users (B,) int64, items (B, K) int64 -> scores (B, K) per head; sq_norms on the batch's ego rows."""
        batch, k = items.shape
        ego_u, ego_i = self._ego()
        scores, sq_norms, cache = {}, {}, {}
        for head in self.heads:
            final = self.propagate(torch.cat([ego_u[head], ego_i[head]]))
            fu, fi = final[: self.n_users], final[self.n_users :]
            cache[head] = (fu.detach(), fi.detach())
            eu, ei = fu[users], fi[items.reshape(-1)].view(batch, k, -1)
            scores[head] = (eu.unsqueeze(1) * ei).sum(-1)
            sq_norms[head] = batch_sq_norm(ego_u[head][users], ego_i[head][items.reshape(-1)], batch_size=batch)
        self._cache = cache
        return ModelOutput(scores, sq_norms)

    @torch.no_grad()
    def score(self, users: torch.Tensor, items: torch.Tensor, head: str = PREFERENCE) -> torch.Tensor:
        """Scores (B, K) without gradient; reuses the factors of the last training forward when there is one
        (one step stale, which is what a sampler like PLD needs), else propagates."""
        if self._cache is not None and self.training:
            fu, fi = self._cache[head]
        else:
            fu, fi = self.embedding_matrices(head)
        return (fu[users].unsqueeze(1) * fi[items]).sum(-1)

    def train(self, mode: bool = True) -> "LightGCN":
        self._cache = None
        return super().train(mode)

    @torch.no_grad()
    def embedding_matrices(self, head: str = PREFERENCE) -> tuple[torch.Tensor, torch.Tensor]:
        """Propagated (n_users, D) and (n_items, D) factors whose products are the scores of ``head``."""
        ego = torch.cat([self.user_tables.weights(head), self.item_tables.weights(head)])
        final = self.propagate(ego)
        return final[: self.n_users], final[self.n_users :]
