"""LightGCN with its graph propagation partitioned by rows across the ranks.

Rank r owns the users and items of its row-wise block (:func:`~robustrec.distributed.placement.row_block`) and
keeps only those nodes' rows of the normalised adjacency Â. One layer is then, on every rank,
``own rows of Â @ (previous layer, all nodes)``, followed by an all-gather of the ranks' blocks. Why partition
rather than replicate Â: the propagation (K sparse products over nnz · D per step) is the cost of LightGCN, and
partitioning divides it and Â's memory by the number of ranks, where a replicated Â would make every rank
repeat the whole propagation. What is not partitioned: each layer's (n_users + n_items, D) activations, which
every rank holds during a step, since in an interaction graph almost every node has neighbours on every rank
(a neighbour-only exchange would move about as much). So the tables and their optimizer state are sharded,
Â and the propagation work are split, and the activations are the part of LightGCN that stays one host's size.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from robustrec.distributed.collectives import gather_blocks
from robustrec.distributed.placement import row_block
from robustrec.models import PREFERENCE
from robustrec.models.lightgcn import LightGCN, _to_torch_sparse, normalized_adjacency
from robustrec.models.tables import SideTables


def lookup_rows(tables: SideTables, start: int, stop: int) -> dict[str, torch.Tensor]:
    """Rows [start, stop) of every head's table through the (sharded) lookup: head -> (stop - start, D).
    Collective when sharded. An empty range looks up one row and drops it, so every rank takes part."""
    ids = torch.arange(start, max(stop, start + 1), device=tables.device)
    ids = ids.clamp(max=tables.num_rows - 1)
    return {head: rows[: stop - start] for head, rows in tables(ids).items()}


class PartitionedLightGCN(LightGCN):
    """A :class:`~robustrec.models.lightgcn.LightGCN` whose propagation is split across ``world`` ranks.

    Built from an ordinary LightGCN (whose tables it takes over, before sharding) and the training matrix;
    scores, losses and gradients equal the unsharded model's, where the gradient is that of the sum of every
    rank's loss. ``forward``, ``score`` and ``train`` are LightGCN's; the ego lookup (``_ego``), the propagation
    and ``embedding_matrices`` are collective.
    """

    def __init__(self, model: LightGCN, train: sp.spmatrix, *, rank: int, world: int) -> None:
        torch.nn.Module.__init__(self)
        self.n_users, self.n_items = model.n_users, model.n_items
        self.dim, self.heads, self.n_layers, self.device = model.dim, model.heads, model.n_layers, model.device
        self.user_tables, self.item_tables = model.user_tables, model.item_tables
        self._cache = None
        self.rank, self.world = rank, world
        self.user_block = row_block(self.n_users, rank, world)
        self.item_block = row_block(self.n_items, rank, world)
        # gathered layout: rank-major blocks of S = bu + bi rows, [own users, padding, own items, padding]
        bu, bi = -(-self.n_users // world), -(-self.n_items // world)
        self._padded = (bu, bi)
        self.block_rows = bu + bi
        users, items = np.arange(self.n_users), np.arange(self.n_items)
        position = np.concatenate([(users // bu) * self.block_rows + users % bu,
                                   (items // bi) * self.block_rows + bu + items % bi]).astype(np.int64)
        self.position = torch.from_numpy(position).to(self.device)  # node (users, then items) -> gathered row
        adjacency = normalized_adjacency(train)
        (u0, u1), (i0, i1) = self.user_block, self.item_block
        own = np.concatenate([np.arange(u0, u1), self.n_users + np.arange(i0, i1)])
        rows = adjacency[own]
        rows = sp.csr_matrix((rows.data, position[rows.indices], rows.indptr),
                             shape=(own.size, world * self.block_rows))
        pad = (u1 - u0, bu - (u1 - u0)), (i1 - i0, bi - (i1 - i0))
        empty = [sp.csr_matrix((n, rows.shape[1]), dtype=np.float32) for _, n in pad]
        block = sp.vstack([rows[: pad[0][0]], empty[0], rows[pad[0][0]:], empty[1]], format="csr")
        block.sort_indices()
        self.adjacency = _to_torch_sparse(block, self.device)  # (S, world * S): own rows of Â
        del adjacency

    def _gathered(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """This rank's (own users, own items) rows -> every node's rows, in node order (differentiable)."""
        bu, bi = self._padded
        pad_u = users.new_zeros((bu - users.shape[0], users.shape[1]))
        pad_i = items.new_zeros((bi - items.shape[0], items.shape[1]))
        return gather_blocks(torch.cat([users, pad_u, items, pad_i]))[self.position]

    def _ego(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        own_u = lookup_rows(self.user_tables, *self.user_block)
        own_i = lookup_rows(self.item_tables, *self.item_block)
        users, items = {}, {}
        for head in self.heads:
            ego = self._gathered(own_u[head], own_i[head])
            users[head], items[head] = ego[: self.n_users], ego[self.n_users :]
        return users, items

    def propagate(self, ego: torch.Tensor) -> torch.Tensor:
        """(n_users + n_items, D) ego embeddings, node order -> their layer mean; collective."""
        layer = ego.new_zeros((self.world * self.block_rows, ego.shape[1])).index_copy(0, self.position, ego)
        total = layer
        for _ in range(self.n_layers):
            layer = gather_blocks(self.adjacency @ layer)
            total = total + layer
        return total[self.position] / (self.n_layers + 1)

    @torch.no_grad()
    def embedding_matrices(self, head: str = PREFERENCE) -> tuple[torch.Tensor, torch.Tensor]:
        users, items = self._ego()
        final = self.propagate(torch.cat([users[head], items[head]]))
        return final[: self.n_users], final[self.n_users :]

    @torch.no_grad()
    def owned_factors(self, head: str = PREFERENCE) -> tuple[torch.Tensor, torch.Tensor]:
        """Propagated factors of this rank's users (user_block rows, D) and items (item_block rows, D)."""
        users, items = self.embedding_matrices(head)
        (u0, u1), (i0, i1) = self.user_block, self.item_block
        return users[u0:u1], items[i0:i1]
