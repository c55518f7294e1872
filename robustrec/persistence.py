"""A trained recommender on disk: what :meth:`Recommender.save` writes and every reader loads.

A saved recommender is a directory holding :data:`ARTEFACT_FILES` (a run directory holds them beside its
config.json, metrics.json, ...):

``model.safetensors``
    ``user_factors`` (n_users, D) and ``item_factors`` (n_items, D) float32: the factors whose products are the
    preference scores (LightGCN: the propagated layer means, so serving needs no graph);
    ``state.<name>``: the model's own ``state_dict`` (every head's tables; LightGCN: the ego embeddings), from
    which :func:`rebuild_model` rebuilds the ``nn.Module``;
    ``seen.indptr`` (n_users + 1,) and ``seen.indices`` (nnz,) int64: the training interactions as CSR (the
    items filtered from recommendations; LightGCN's graph).
``model_ids.json``
    ``{"user_ids": [...], "item_ids": [...]}``: the raw id of every user and item index (ints or strings).
``model.json``
    ``{"format_version", "config" (TrainConfig fields), "n_users", "n_items"}``; written last, so a directory
    with it is complete.

No optimizer state and no pickled Python objects: safetensors and JSON only, loadable without FBGEMM's fused
training modules. Every file is written atomically (:mod:`robustrec.atomic`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from robustrec import atomic
from robustrec.atomic import UnreadableFileError, read_json
from robustrec.config import TrainConfig
from robustrec.data import Interactions

FORMAT_VERSION = 1
TENSORS_FILE, IDS_FILE, META_FILE = "model.safetensors", "model_ids.json", "model.json"
#: The files of a saved recommender, in the order they are written (``model.json`` last).
ARTEFACT_FILES: tuple[str, ...] = (TENSORS_FILE, IDS_FILE, META_FILE)
STATE_PREFIX = "state."


@dataclass
class Artefact:
    """Everything a saved recommender holds, in memory.

    Attributes:
        config: the training configuration.
        user_factors: (n_users, D) float32; item_factors: (n_items, D) float32 — score = user · item.
        state: the model's ``state_dict`` (CPU tensors), enough to rebuild it with :func:`rebuild_model`.
        seen: (n_users, n_items) float32 CSR of the training interactions.
        user_ids: (n_users,) raw ids; item_ids: (n_items,) raw ids.
    """

    config: TrainConfig
    user_factors: torch.Tensor
    item_factors: torch.Tensor
    state: dict[str, torch.Tensor]
    seen: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray

    def __post_init__(self) -> None:
        n_users, n_items = self.seen.shape
        shapes = {"user_factors": (self.user_factors.shape[0], n_users),
                  "item_factors": (self.item_factors.shape[0], n_items),
                  "user_ids": (len(self.user_ids), n_users), "item_ids": (len(self.item_ids), n_items)}
        for name, (got, expected) in shapes.items():
            if got != expected:
                raise ValueError(f"{name} has {got} rows but the training matrix has {expected}")


def is_saved(directory: str | Path) -> bool:
    """True when ``directory`` holds a complete saved recommender."""
    return all((Path(directory) / name).is_file() for name in ARTEFACT_FILES)


def _json_ids(ids: np.ndarray, what: str) -> list:
    values = np.asarray(ids).tolist()
    bad = next((v for v in values if not isinstance(v, (int, float, str)) or isinstance(v, bool)), None)
    if bad is not None:
        raise ValueError(f"cannot save {what} of type {type(bad).__name__} ({bad!r}); use int or str raw ids")
    return values


def _ids_array(values: list) -> np.ndarray:
    """Raw ids as the loaders build them: int64 or float64 when all are numbers of one kind, else object."""
    kinds = {type(v) for v in values}
    if kinds <= {int}:
        return np.asarray(values, dtype=np.int64)
    if kinds <= {float}:
        return np.asarray(values, dtype=np.float64)
    return np.asarray(values, dtype=object)


def save(directory: str | Path, artefact: Artefact) -> Path:
    """Write ``artefact`` into ``directory`` (created if needed; its other files are left alone)."""
    from safetensors.torch import save as safetensors_bytes

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    seen = sp.csr_matrix(artefact.seen)
    tensors = {
        "user_factors": artefact.user_factors.detach().to("cpu", torch.float32).contiguous(),
        "item_factors": artefact.item_factors.detach().to("cpu", torch.float32).contiguous(),
        "seen.indptr": torch.from_numpy(seen.indptr.astype(np.int64)),
        "seen.indices": torch.from_numpy(seen.indices.astype(np.int64)),
        **{STATE_PREFIX + k: v.detach().cpu().contiguous() for k, v in artefact.state.items()},
    }
    data = safetensors_bytes(tensors, metadata={"format": "robustrec-recommender",
                                                "format_version": str(FORMAT_VERSION)})
    atomic.atomic_write(directory / TENSORS_FILE, lambda handle: handle.write(data))
    ids = {"user_ids": _json_ids(artefact.user_ids, "user ids"), "item_ids": _json_ids(artefact.item_ids, "item ids")}
    atomic.save_text(json.dumps(ids, separators=(",", ":")) + "\n", directory / IDS_FILE)
    meta = {"format_version": FORMAT_VERSION, "config": artefact.config.to_dict(),
            "n_users": seen.shape[0], "n_items": seen.shape[1]}
    atomic.save_json(meta, directory / META_FILE)
    return directory


def load(directory: str | Path, *, device: str | torch.device = "cpu") -> Artefact:
    """Read a directory written by :func:`save`; FileNotFoundError naming the first missing file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    for name in ARTEFACT_FILES:
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory / name} is missing; is {directory} a saved recommender or a "
                                    f"finished training run?")
    meta = read_json(directory / META_FILE, keys=("format_version", "config", "n_users", "n_items"), hint=_RETRY)
    if meta["format_version"] != FORMAT_VERSION:
        raise UnreadableFileError(f"{directory / META_FILE}: format_version {meta['format_version']!r} is not "
                                  f"{FORMAT_VERSION}; saved by another robustrec version")
    ids = read_json(directory / IDS_FILE, keys=("user_ids", "item_ids"), hint=_RETRY)
    try:
        tensors = load_file(str(directory / TENSORS_FILE), device="cpu")
        indptr, indices = tensors.pop("seen.indptr").numpy(), tensors.pop("seen.indices").numpy()
        user_factors, item_factors = tensors.pop("user_factors"), tensors.pop("item_factors")
    except (SafetensorError, KeyError, OSError) as error:  # truncated or corrupt, or a tensor missing
        raise UnreadableFileError(f"{directory / TENSORS_FILE} is truncated or corrupt ({_first_line(error)}); "
                                  f"{_RETRY}") from None
    shape = (meta["n_users"], meta["n_items"])
    seen = sp.csr_matrix((np.ones(len(indices), np.float32), indices.astype(np.int32), indptr), shape=shape)
    state = {k[len(STATE_PREFIX):]: v for k, v in tensors.items() if k.startswith(STATE_PREFIX)}
    try:
        return Artefact(
            config=TrainConfig.from_dict(meta["config"]),
            user_factors=user_factors.to(device),
            item_factors=item_factors.to(device),
            state=state,
            seen=seen,
            user_ids=_ids_array(ids["user_ids"]),
            item_ids=_ids_array(ids["item_ids"]),
        )
    except ValueError as error:  # the files disagree (sizes) or the config no longer validates
        raise UnreadableFileError(f"{directory} holds an inconsistent saved recommender ({error}); {_RETRY}") \
            from None


_RETRY = "retrain the run or save the recommender again"


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def from_model(config: TrainConfig, model: torch.nn.Module, seen: sp.csr_matrix, user_ids: np.ndarray,
               item_ids: np.ndarray) -> Artefact:
    """The artefact of a trained ``model`` (fused, plain or gathered after sharding) of ``config``."""
    from robustrec.models import PREFERENCE

    users, items = model.embedding_matrices(PREFERENCE)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return Artefact(config, users.detach(), items.detach(), state, sp.csr_matrix(seen), np.asarray(user_ids),
                    np.asarray(item_ids))


def save_trained(directory: str | Path, config: TrainConfig, model: torch.nn.Module, train: Interactions) -> Path:
    """Save ``model``, trained with ``config`` on ``train``, into ``directory`` (what a training run writes)."""
    return save(directory, from_model(config, model, train.matrix, train.user_ids, train.item_ids))


def rebuild_model(artefact: Artefact, *, device: str | torch.device | None = None) -> torch.nn.Module:
    """The trained ``nn.Module`` (plain torchrec tables, no fused optimizer), in eval mode."""
    from dataclasses import replace

    from robustrec.training import new_model

    config = artefact.config if device is None else replace(artefact.config, device=str(device))
    n_users, n_items = artefact.seen.shape
    model = new_model(config, n_users, n_items, artefact.seen)
    model.load_state_dict(artefact.state)
    return model.eval()
