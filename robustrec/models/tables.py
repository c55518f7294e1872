"""Embedding tables on torchrec.

Every model keeps its user-side and item-side factors in two torchrec
``EmbeddingBagCollection`` modules (one table per *head*, one id per bag), so the
same ``nn.Module`` trains unsharded on one device — with FBGEMM's fused sparse
optimizer, see :mod:`robustrec.optim` — and wraps unchanged in torchrec's
``DistributedModelParallel`` (:mod:`robustrec.distributed`).
"""

from __future__ import annotations

import torch
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor


def table_name(side: str, head: str) -> str:
    """Name of the table (and its single feature) holding ``side`` ("user"/"item") factors of ``head``."""
    return f"{side}_{head}"


class SideTables(nn.Module):
    """The tables of one side (users or items): one ``(num_rows, dim)`` table per head.

    Args:
        side: "user" or "item".
        num_rows: number of users or items.
        dim: embedding dimension.
        heads: names of the factorisations, e.g. ("preference",) or ("preference", "phi").
        init_std: standard deviation of the normal initialisation.
        init_mean: per-head mean of the initialisation (default 0).
        head_dims: per-head embedding dimension overriding ``dim`` (e.g. a small NBPO phi model).
    """

    def __init__(
        self,
        side: str,
        num_rows: int,
        dim: int,
        heads: tuple[str, ...],
        *,
        init_std: float = 0.1,
        init_mean: dict[str, float] | None = None,
        head_dims: dict[str, int] | None = None,
        device: torch.device | None = None,
    ) -> None:
        super().__init__()
        self.side = side
        self.heads = tuple(heads)
        self.num_rows = num_rows
        self.dim = dim
        self.head_dims = {head: (head_dims or {}).get(head, dim) for head in self.heads}
        self.device = device or torch.device("cpu")
        self.features = [table_name(side, h) for h in self.heads]
        self.collection = EmbeddingBagCollection(
            tables=[
                EmbeddingBagConfig(
                    name=name, embedding_dim=self.head_dims[head], num_embeddings=num_rows, feature_names=[name]
                )
                for head, name in zip(self.heads, self.features)
            ],
            device=self.device,
        )
        means = init_mean or {}
        with torch.no_grad():
            for head, name in zip(self.heads, self.features):
                weight = self.collection.embedding_bags[name].weight
                weight.normal_(means.get(head, 0.0), init_std)

    def forward(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Look up ``ids`` (N,) int64 in every head's table: head -> (N, head_dims[head])."""
        ids = ids.reshape(-1)
        n = ids.numel()
        kjt = KeyedJaggedTensor(
            keys=self.features,
            values=ids.repeat(len(self.features)),
            lengths=torch.ones(n * len(self.features), dtype=torch.int32, device=ids.device),
        )
        pooled = self.collection(kjt).to_dict()
        return {head: pooled[name] for head, name in zip(self.heads, self.features)}

    def local_weight(self, head: str) -> torch.Tensor | None:
        """The live ``(num_rows, dim)`` table of ``head`` itself (no copy, no gradient) when this process
        holds it whole (plain or fused collection), else None (e.g. sharded)."""
        bags = getattr(self.collection, "embedding_bags", None)
        if bags is None or table_name(self.side, head) not in bags:
            return None
        weight = bags[table_name(self.side, head)].weight
        return weight.detach() if weight.shape == (self.num_rows, self.head_dims[head]) else None

    def weights(self, head: str, *, chunk_size: int = 65536) -> torch.Tensor:
        """The full ``(num_rows, dim)`` table of ``head``, by lookup (works fused, unfused and sharded)."""
        dev = self.device
        parts = []
        for start in range(0, self.num_rows, chunk_size):
            ids = torch.arange(start, min(start + chunk_size, self.num_rows), device=dev)
            parts.append(self(ids)[head])
        return torch.cat(parts)
