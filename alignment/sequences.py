"""Preference pairs as token sequences: TRL's tokenisation, fitted to the model's context, every pair counted.

Training (:class:`alignment.trainer.RobustDPOTrainer`) and evaluation (:func:`alignment.policy.score_pairs`)
both go through :func:`prepare_pairs`, so a pair is cut the same way in both.

**Tokenisation** (:func:`tokenize_pair`) is TRL's ``DPOTrainer`` one: text pairs get the EOS token appended to
each completion and are encoded as ``prompt`` and ``prompt + completion``; message lists go through the
tokenizer's chat template (the prompt with the generation prompt). The completion starts where the two
encodings diverge. A test checks this against TRL's own preprocessing.

**Lengths** (:func:`fit_pair`). A pair is too long when its prompt plus its longer completion exceeds
``max_length`` tokens (or its prompt exceeds ``max_prompt_length``). :data:`TRUNCATION_MODES`:

- ``keep_end`` (default; for dialogues the last turns matter most): the prompt loses its *first* tokens — down
  to ``max_prompt_length`` if set, and further, if needed, until the longer completion fits, but never below
  half of ``max_length`` — then the completions lose their *last* tokens to fit. Nothing is dropped for length.
- ``keep_start`` (TRL's rule): the prompt keeps its first ``max_prompt_length`` tokens if set; each sequence
  keeps its first ``max_length`` tokens; a pair whose prompt alone fills ``max_length`` is dropped (no
  completion token would be left to learn from).

A pair whose two completions are identical once cut carries no preference any more and is dropped too.
:class:`LengthCounts` counts what was dropped and what was cut.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, astuple, dataclass

from .data import PAIR_FLIP_RATE

#: How an over-long pair is cut (see the module docstring); ``truncation_mode`` of RobustDPOConfig.
TRUNCATION_MODES: tuple[str, ...] = ("keep_end", "keep_start")

#: The columns a prepared pair has (what TRL's collator reads).
ID_COLUMNS = ("prompt_ids", "chosen_ids", "rejected_ids")



@dataclass(frozen=True)
class LengthLimits:
    """The token budget of one sequence (prompt + one completion)."""

    max_length: int
    max_prompt_length: int | None = None
    truncation_mode: str = "keep_end"

    def __post_init__(self):
        if self.truncation_mode not in TRUNCATION_MODES:
            raise ValueError(f"truncation_mode must be one of {', '.join(TRUNCATION_MODES)}, "
                             f"got {self.truncation_mode!r}")
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or self.max_length < 2:
            raise ValueError(f"max_length must be an integer >= 2 (a prompt token and a completion token), "
                             f"got {self.max_length!r}")
        if self.max_prompt_length is not None and not 1 <= self.max_prompt_length < self.max_length:
            raise ValueError(f"max_prompt_length must lie in [1, max_length={self.max_length}), "
                             f"got {self.max_prompt_length}")


@dataclass(frozen=True)
class LengthCounts:
    """What fitting pairs to :class:`LengthLimits` did: ``n_in = dropped_too_long + used``; ``truncated <= used``."""

    n_in: int
    dropped_too_long: int
    truncated: int
    used: int

    def __post_init__(self):
        if self.n_in != self.dropped_too_long + self.used or not 0 <= self.truncated <= self.used:
            raise ValueError(f"inconsistent length counts {self}")

    def __add__(self, other: LengthCounts) -> LengthCounts:
        return LengthCounts(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


@dataclass(frozen=True)
class DataCounts:
    """Every pair of a source, counted: ``read = invalid + dropped_too_long + used``; ``truncated`` of the used.

    ``to_dict()`` is the ``"data"`` entry of run.json and of ``evaluate --json``.
    """

    read: int
    invalid: int
    dropped_too_long: int
    truncated: int
    used: int

    def __post_init__(self):
        if self.read != self.invalid + self.dropped_too_long + self.used or not 0 <= self.truncated <= self.used:
            raise ValueError(f"inconsistent data counts {self}")

    @classmethod
    def of(cls, read: int, invalid: int, lengths: LengthCounts) -> DataCounts:
        """Combine the loader's counts (rows read, invalid) with those of :func:`prepare_pairs`."""
        return cls(read, invalid, lengths.dropped_too_long, lengths.truncated, lengths.used)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    def summary(self) -> str:
        share = self.used / self.read if self.read else 0.0
        return (f"read {self.read} pairs: {self.invalid} invalid, {self.dropped_too_long} dropped as too long, "
                f"{self.used} used ({share:.1%}), of which {self.truncated} truncated")


def model_context_length(model_config, tokenizer=None) -> int:
    """The number of positions the model can attend to (``max_position_embeddings``, GPT-2's ``n_positions``).

    Falls back to the tokenizer's ``model_max_length`` when the config names none; raises ValueError when
    neither does.
    """
    text_config = model_config.get_text_config() if hasattr(model_config, "get_text_config") else model_config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(text_config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < 1_000_000:
        return value
    raise ValueError("the model's config names no context length (max_position_embeddings); set max_length")


def tokenize_pair(example: Mapping, tokenizer) -> dict[str, list[int]]:
    """``prompt_ids``, ``chosen_ids``, ``rejected_ids`` of one pair, as TRL's DPOTrainer tokenises it."""
    prompt, chosen, rejected = example["prompt"], example["chosen"], example["rejected"]
    if isinstance(prompt, list):
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("the pairs are chat messages, but the tokenizer has no chat template; give the model "
                             "folder a chat_template, or use text pairs")

        def encode(messages, **kwargs):
            return tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, tools=None,
                                                 **kwargs)["input_ids"]

        prompt_ids = encode(prompt, add_generation_prompt=True)
        chosen_full, rejected_full = encode(prompt + chosen), encode(prompt + rejected)
    else:
        eos = tokenizer.eos_token
        chosen = chosen if chosen.endswith(eos) else chosen + eos
        rejected = rejected if rejected.endswith(eos) else rejected + eos
        # verbose=False: no warning about sequences longer than the model; fit_pair cuts and counts them
        prompt_ids = tokenizer(text=prompt, verbose=False)["input_ids"]
        chosen_full = tokenizer(text=prompt + chosen, verbose=False)["input_ids"]
        rejected_full = tokenizer(text=prompt + rejected, verbose=False)["input_ids"]
    # The completion starts where the encodings of the prompt and prompt + completion diverge (tokens can
    # merge across the boundary, and chat templates may render the prompt alone differently).
    cut = min(_common_prefix_length(prompt_ids, chosen_full), _common_prefix_length(prompt_ids, rejected_full))
    return {"prompt_ids": list(prompt_ids[:cut]), "chosen_ids": list(chosen_full[cut:]),
            "rejected_ids": list(rejected_full[cut:])}


def fit_pair(ids: Mapping[str, list[int]], limits: LengthLimits) -> tuple[dict[str, list[int]] | None, bool]:
    """Cut one tokenised pair to ``limits`` (see the module docstring).

    Returns ``(ids, truncated)``; ``ids`` is None when the pair is dropped.
    """
    prompt, chosen, rejected = list(ids["prompt_ids"]), list(ids["chosen_ids"]), list(ids["rejected_ids"])
    n = limits.max_length
    longest = max(len(chosen), len(rejected))
    if limits.truncation_mode == "keep_end":
        keep = len(prompt)
        if limits.max_prompt_length is not None:
            keep = min(keep, limits.max_prompt_length)
        if keep + longest > n:
            keep = min(keep, max(n - longest, n // 2))
        new_prompt = prompt[len(prompt) - keep:]
    else:
        new_prompt = prompt[: limits.max_prompt_length] if limits.max_prompt_length is not None else prompt
        if len(new_prompt) >= n:
            return None, True
    room = n - len(new_prompt)
    new_chosen, new_rejected = chosen[:room], rejected[:room]
    truncated = (len(new_prompt), len(new_chosen), len(new_rejected)) != (len(prompt), len(chosen), len(rejected))
    if new_chosen == new_rejected:
        return None, truncated
    return {"prompt_ids": new_prompt, "chosen_ids": new_chosen, "rejected_ids": new_rejected}, truncated


def prepare_pairs(pairs, tokenizer, limits: LengthLimits):
    """Tokenise and fit every pair; returns ``(dataset, counts)``.

    Args:
        pairs: a ``datasets.Dataset`` (or any iterable of mappings) with ``prompt``, ``chosen``, ``rejected``
            (texts or message lists).
    Returns:
        a ``datasets.Dataset`` with the list columns of :data:`ID_COLUMNS` (one row per used pair; plus
        :data:`PAIR_FLIP_RATE` when the pairs have one) and the
        :class:`LengthCounts`.
    """
    from datasets import Dataset

    columns: dict[str, list] = {key: [] for key in ID_COLUMNS}
    n_in = dropped = truncated = 0
    for example in _rows(pairs):
        n_in += 1
        fitted, was_cut = fit_pair(tokenize_pair(example, tokenizer), limits)
        if fitted is None:
            dropped += 1
            continue
        truncated += was_cut
        for key in ID_COLUMNS:
            columns[key].append(fitted[key])
        if PAIR_FLIP_RATE in example:
            columns.setdefault(PAIR_FLIP_RATE, []).append(float(example[PAIR_FLIP_RATE]))
    counts = LengthCounts(n_in=n_in, dropped_too_long=dropped, truncated=truncated, used=n_in - dropped)
    return Dataset.from_dict(columns), counts


def _rows(pairs) -> Iterable[Mapping]:
    if hasattr(pairs, "to_dict") and hasattr(pairs, "columns"):  # a DataFrame
        return pairs.to_dict("records")
    return pairs


def _common_prefix_length(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
