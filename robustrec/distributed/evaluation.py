"""Full-ranking evaluation of a sharded model without gathering its tables.

Rank r owns a row-wise block of the users and of the items (:func:`~robustrec.distributed.placement.row_block`);
for a row-wise placement these are exactly its table shards, read in place. Per round, each rank sends the
factors of a batch of its own test users to every rank (all-gather of (b, D)); every rank scores all of them
against its item block with its block's training items masked, keeps its top max_k (item ids and scores), and
sends each user's candidates back to the user's owner (all-to-all of (b, max_k)); the owner merges the
world × max_k candidates into the top max_k and computes the metrics of its users with the same arithmetic as
single-process evaluation (:func:`robustrec.evaluate.top_k_metrics`). The per-user rows are gathered (a few
numbers per user) and averaged in user order, so the result equals :func:`robustrec.evaluate.ranking_metrics`
on the gathered factors exactly, up to the order of tied scores.

No rank ever holds more than its blocks of the tables, one batch of user factors and the candidates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import torch.distributed as dist

from robustrec.distributed.collectives import all_gather_rows, exchange, max_over_ranks
from robustrec.distributed.graph import PartitionedLightGCN, lookup_rows
from robustrec.distributed.placement import row_block
from robustrec.evaluate import DEFAULT_KS, METRICS, _row_entries, mean_metrics, metric_key, metrics_frame, top_k_metrics
from robustrec.models import PREFERENCE
from robustrec.models.tables import SideTables, table_name

LOOKUP_CHUNK = 65536  # rows per lookup when a block is read through the sharded lookup (not row-wise placement)


def owned_rows(tables: SideTables, head: str = PREFERENCE) -> torch.Tensor:
    """This rank's row-wise block of ``head``'s table (rows, D), no gradient.

    Under row-wise placement the block is this rank's shard, read in place; otherwise it is looked up through
    the sharded tables in chunks (collective: every rank reads its block, chunk by chunk).
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    start, stop = row_block(tables.num_rows, rank, world)
    name = table_name(tables.side, head)
    sharding = getattr(tables.collection, "module_sharding_plan", {}).get(name)
    if sharding is not None and sharding.sharding_type == "row_wise":
        weight = tables.collection.state_dict()[f"embedding_bags.{name}.weight"]
        shards = weight.local_shards()
        if stop == start:
            return torch.empty((0, tables.head_dims[head]), device=tables.device)
        (shard,) = shards
        offsets = list(shard.metadata.shard_offsets)
        if offsets != [start, 0] or shard.tensor.shape[0] != stop - start:
            raise AssertionError(f"{name}: rank {rank} holds rows at {offsets} of size {list(shard.tensor.shape)}, "
                                 f"expected rows [{start}, {stop})")
        return shard.tensor.detach()
    block = math.ceil(tables.num_rows / world)
    parts = []
    with torch.no_grad():
        for lo in range(0, block, LOOKUP_CHUNK):  # the same number of lookups on every rank
            a, b = min(start + lo, stop), min(start + lo + LOOKUP_CHUNK, stop)
            parts.append(lookup_rows(tables, a, b)[head])
    return torch.cat(parts) if parts else torch.empty((0, tables.head_dims[head]), device=tables.device)


def owned_factors(model: torch.nn.Module, head: str = PREFERENCE) -> tuple[torch.Tensor, torch.Tensor]:
    """The factors whose products are the scores, for this rank's user block and item block."""
    if isinstance(model, PartitionedLightGCN):
        return model.owned_factors(head)
    return owned_rows(model.user_tables, head), owned_rows(model.item_tables, head)


def per_user_metrics_sharded(
    model: torch.nn.Module,
    train: sp.csr_matrix,
    test: sp.csr_matrix,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 1024,
) -> pd.DataFrame:
    """:func:`robustrec.evaluate.per_user_metrics` of a sharded model, computed where its shards are; every
    rank returns the whole frame. ``model`` is the module inside DistributedModelParallel (``sharded.module``)."""
    if train.shape != test.shape:
        raise ValueError(f"train shape {train.shape} differs from test shape {test.shape}")
    rank, world = dist.get_rank(), dist.get_world_size()
    n_users, n_items = train.shape
    users_f, items_f = owned_factors(model)
    device = items_f.device
    (u0, u1), (i0, i1) = row_block(n_users, rank, world), row_block(n_items, rank, world)
    ks = sorted(set(int(k) for k in ks))
    max_k = min(ks[-1], n_items)
    local_k = min(max_k, i1 - i0)
    mine = u0 + np.flatnonzero(np.diff(test.indptr)[u0:u1] > 0)
    exclude = sp.csr_matrix(train[:, i0:i1])
    columns: dict[str, list[np.ndarray]] = {metric_key(m, k): [] for k in ks for m in METRICS}
    rounds = max_over_ranks(math.ceil(mine.size / batch_size))
    with torch.no_grad():
        for j in range(rounds):
            batch = mine[j * batch_size : (j + 1) * batch_size]
            queries = all_gather_rows(users_f[torch.from_numpy(batch - u0).to(device)])
            asked = [b.cpu().numpy() for b in all_gather_rows(torch.from_numpy(batch).to(device))]
            scores = torch.cat(queries) @ items_f.T  # (sum of the ranks' batch sizes, items of this block)
            if scores.shape[1]:
                scores.index_put_(_row_entries(exclude, np.concatenate(asked), device),
                                  torch.tensor(float("-inf"), dtype=scores.dtype, device=device))
            values, ids = torch.topk(scores, local_k, dim=1)
            send_values = torch.full((world, batch_size, max_k), float("-inf"), dtype=scores.dtype, device=device)
            send_ids = torch.full((world, batch_size, max_k), -1, dtype=torch.int64, device=device)
            start = 0
            for owner, rows in enumerate(asked):
                send_values[owner, : rows.size, :local_k] = values[start : start + rows.size]
                send_ids[owner, : rows.size, :local_k] = ids[start : start + rows.size] + i0
                start += rows.size
            got_values, got_ids = exchange(send_values), exchange(send_ids)  # (world, batch_size, max_k)
            if batch.size == 0:
                continue
            got_values = got_values[:, : batch.size].permute(1, 0, 2).reshape(batch.size, world * max_k)
            got_ids = got_ids[:, : batch.size].permute(1, 0, 2).reshape(batch.size, world * max_k)
            best = torch.topk(got_values, max_k, dim=1).indices
            top = torch.gather(got_ids, 1, best)
            for key, value in top_k_metrics(top, batch, test, ks).items():
                columns[key].append(value)
    parts: list = [None] * world
    dist.all_gather_object(parts, (mine, {k: (np.concatenate(v) if v else np.array([])) for k, v in columns.items()}))
    users = np.concatenate([p[0] for p in parts])
    order = np.argsort(users, kind="stable")
    merged = {k: [np.concatenate([p[1][k] for p in parts])[order]] for k in columns}
    return metrics_frame(users[order], merged)


def evaluate_sharded(model: torch.nn.Module, train: sp.csr_matrix, test: sp.csr_matrix, ks: Sequence[int] = DEFAULT_KS,
                     *, batch_size: int = 1024) -> dict[str, float]:
    """Mean ``metric@k`` over the test users (equal on every rank); see :func:`per_user_metrics_sharded`."""
    return mean_metrics(per_user_metrics_sharded(model, train, test, ks=ks, batch_size=batch_size))


def gather_tables(sharded: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Full weights of every table of a sharded model, keyed like the unsharded model's state_dict (collective).

    For checks on small models only: every rank ends up holding every table.
    """
    state = {}
    for name, module in sharded.module.named_modules():
        if isinstance(module, SideTables):
            for head, feature in zip(module.heads, module.features):
                with torch.no_grad():
                    state[f"{name}.collection.embedding_bags.{feature}.weight"] = module.weights(head).clone()
    return state
