"""Matrix factorisation: s_ui = <e_u, e_i> per head, on torchrec tables."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from robustrec.models.tables import SideTables

PREFERENCE = "preference"


@dataclass
class ModelOutput:
    """What a model gives an objective for one batch.

    scores: head -> (B, K) scores s_uk of each row's user against its K items
        (column 0 is the positive, columns 1.. are sampled items, as the sampler lays them out).
    sq_norms: head -> scalar, sum over the batch's looked-up rows of ||e||^2 divided by B
        (the "L2 on the batch's embeddings" regulariser of BPR-style training).
    """

    scores: dict[str, torch.Tensor]
    sq_norms: dict[str, torch.Tensor]


def batch_sq_norm(*embeddings: torch.Tensor, batch_size: int) -> torch.Tensor:
    return sum(e.pow(2).sum() for e in embeddings) / batch_size


class MatrixFactorization(nn.Module):
    """Dot-product factorisation with one user table and one item table per head.

    Args:
        n_users, n_items: table sizes.
        dim: embedding dimension.
        heads: factorisations learned jointly; "preference" is the one ranked at
            evaluation, others (e.g. NBPO's "phi") are used by their objective only.
        init_std: normal initialisation scale.
        init_mean: optional per-head initialisation mean.
        head_dims: optional per-head dimension overriding ``dim`` (e.g. NBPO's phi model).
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int = 64,
        *,
        heads: tuple[str, ...] = (PREFERENCE,),
        init_std: float = 0.1,
        init_mean: dict[str, float] | None = None,
        head_dims: dict[str, int] | None = None,
        device: torch.device | None = None,
    ) -> None:
        super().__init__()
        if PREFERENCE not in heads:
            raise ValueError(f"heads must include {PREFERENCE!r}, got {heads}")
        self.n_users, self.n_items, self.dim, self.heads = n_users, n_items, dim, tuple(heads)
        self.user_tables = SideTables("user", n_users, dim, self.heads, init_std=init_std, init_mean=init_mean, head_dims=head_dims, device=device)
        self.item_tables = SideTables("item", n_items, dim, self.heads, init_std=init_std, init_mean=init_mean, head_dims=head_dims, device=device)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> ModelOutput:
        """users (B,) int64, items (B, K) int64 -> scores (B, K) per head."""
        batch, k = items.shape
        user_emb = self.user_tables(users)
        item_emb = self.item_tables(items)
        scores, sq_norms = {}, {}
        for head in self.heads:
            eu = user_emb[head]  # (B, D)
            ei = item_emb[head].view(batch, k, -1)  # (B, K, D)
            scores[head] = (eu.unsqueeze(1) * ei).sum(-1)
            sq_norms[head] = batch_sq_norm(eu, ei, batch_size=batch)
        return ModelOutput(scores, sq_norms)

    @torch.no_grad()
    def score(self, users: torch.Tensor, items: torch.Tensor, head: str = PREFERENCE) -> torch.Tensor:
        """Scores (B, K) of users (B,) against items (B, K) without gradient (e.g. for a sampler)."""
        batch, k = items.shape
        wu, wi = self.user_tables.local_weight(head), self.item_tables.local_weight(head)
        if wu is not None and wi is not None:  # direct rows of the live tables: no lookup machinery
            eu, ei = wu.index_select(0, users), wi.index_select(0, items.reshape(-1)).view(batch, k, -1)
        else:
            eu = self.user_tables(users)[head]
            ei = self.item_tables(items)[head].view(batch, k, -1)
        return torch.bmm(ei, eu.unsqueeze(2)).squeeze(2)

    @torch.no_grad()
    def embedding_matrices(self, head: str = PREFERENCE) -> tuple[torch.Tensor, torch.Tensor]:
        """(n_users, D) and (n_items, D) factors whose products are the scores of ``head``."""
        return self.user_tables.weights(head), self.item_tables.weights(head)
