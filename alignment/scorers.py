"""Scorers of preference pairs for the flip-rate estimate: which response of a pair is the better one.

A scorer's disagreement with the labels, corrected by its error on clean pairs, gives the flip rate
(:func:`alignment.flip_rate.estimate_flip_rate`). Two kinds:

- **Feature scorers** (:class:`BagOfWordsFeatures`, :class:`EmbeddingFeatures`, or any object with a
  ``features(prompts, responses) -> (n, d) array`` method): a logistic regression on the difference of the
  two responses' features, ``P(first ≻ second) = σ(w·(φ(first) − φ(second)))``, cross-fitted by
  :func:`cross_fit` so that no pair is scored by a model that saw it.
- **Fixed scorers** (:class:`RewardModelScorer`, or any callable ``f(prompts, first, second) -> (n,) margins``)
  that never trained on the pairs: their margins are used as they are.

Chosen by name with :func:`make_scorer`; the names, defined once in :data:`SCORERS`, are ``"bow"`` (word
counts, cheap, near chance on dialogues), ``"embeddings"`` (the policy's own mean-pooled hidden states) and
``"reward-model"`` (a local ``AutoModelForSequenceClassification`` folder).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

#: A fixed scorer: ``f(prompts, first, second) -> (n,)`` margins, > 0 where it prefers the first response.
MarginScorer = Callable[[Sequence[str], Sequence[str], Sequence[str]], np.ndarray]

#: Scorer names accepted by :func:`make_scorer` (and the CLI's ``--scorer``).
SCORERS: tuple[str, ...] = ("bow", "embeddings", "reward-model")

_WORD = re.compile(r"[a-z']+")


def words(text: str) -> list[str]:
    """Lower-case word tokens of ``text``."""
    return _WORD.findall(text.lower())


class BagOfWordsFeatures:
    """Word counts of each response over a vocabulary of the ``max_words`` most frequent words.

    :meth:`prepare` builds the vocabulary from the texts of all pairs (no labels are used); the prompt is
    ignored (it is the same for both responses). ``l2`` is the logistic regression's ridge penalty: chosen on
    the controlled experiment (1e-2 or more shrinks rare sentiment words' weights, 1e-4 overfits).
    """

    name = "bow"
    l2 = 1e-3
    standardize = False

    def __init__(self, *, max_words: int = 2000):
        self.max_words = max_words
        self.vocabulary: dict[str, int] = {}

    def prepare(self, texts: Sequence[str]) -> None:
        counts = Counter(w for text in texts for w in words(text))
        self.vocabulary = {w: i for i, (w, _) in enumerate(counts.most_common(self.max_words))}

    def features(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """(n, n_words) float32 counts (``prepare`` first)."""
        if not self.vocabulary:
            raise ValueError("BagOfWordsFeatures has no vocabulary: call prepare(texts) first")
        out = np.zeros((len(responses), len(self.vocabulary)), dtype=np.float32)
        for row, text in enumerate(responses):
            for w in words(text):
                j = self.vocabulary.get(w)
                if j is not None:
                    out[row, j] += 1.0
        return out


class EmbeddingFeatures:
    """The policy's own representation: hidden states of ``prompt + response``, mean-pooled over the response.

    The user's causal LM (by default the shipped model, :func:`alignment.models.load_model`) is the feature
    extractor: no other model is needed. Pooling runs over the response's tokens only: in a causal LM the
    prompt's states do not depend on the response, so they are the same for both responses of a pair and only
    add noise to the difference. Sequences longer than ``max_length`` lose the start of the prompt (the last
    turns matter most); a response longer than ``max_length`` keeps its first ``max_length`` tokens. Counted in
    ``n_truncated``. Batched, no gradients: it runs on CPU.

    Args:
        model, tokenizer: a transformers causal LM and its tokenizer; both None: the shipped default model,
            or the folder ``path`` (a ``save_pretrained`` folder) when given.
        max_length: tokens per sequence.
        batch_size: sequences per forward pass.
        layer: which hidden state (index into ``output_hidden_states``; -1 the last).
        l2: ridge penalty of the logistic regression on the standardised features.
    """

    name = "embeddings"
    standardize = True

    def __init__(
        self,
        model=None,
        tokenizer=None,
        *,
        path: str | os.PathLike | None = None,
        max_length: int = 256,
        batch_size: int = 16,
        layer: int = -1,
        l2: float = 1e-2,
    ):
        if (model is None) != (tokenizer is None):
            raise ValueError("pass both model and tokenizer, or neither (then the default model or path is loaded)")
        if model is None:
            from .models import load_model

            model, tokenizer = load_model(path)
        if max_length < 2 or batch_size < 1:
            raise ValueError(f"max_length must be >= 2 and batch_size >= 1; got {max_length} and {batch_size}")
        self.model, self.tokenizer = model, tokenizer
        self.max_length, self.batch_size, self.layer, self.l2 = max_length, batch_size, layer, l2
        self.n_truncated = 0

    def _sequence(self, prompt_ids: list[int], response_ids: list[int]) -> tuple[list[int], int]:
        """Token ids of prompt + response cut to ``max_length``, and where the response starts."""
        response_ids = response_ids[: self.max_length]
        keep = self.max_length - len(response_ids)
        prompt_ids = prompt_ids[len(prompt_ids) - keep:] if keep > 0 else []
        return prompt_ids + response_ids, len(prompt_ids)

    @torch.no_grad()
    def features(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """(n, hidden_size) float32 mean hidden state over each response's tokens."""
        if len(prompts) != len(responses):
            raise ValueError(f"prompts and responses differ in length: {len(prompts)} and {len(responses)}")
        tok = self.tokenizer
        prompt_ids = tok(list(prompts), add_special_tokens=True)["input_ids"]
        response_ids = tok(list(responses), add_special_tokens=False)["input_ids"]
        sequences = []
        for p, r in zip(prompt_ids, response_ids, strict=True):
            if not r:
                raise ValueError("a response has no tokens: empty responses cannot be scored")
            ids, start = self._sequence(p, r)
            self.n_truncated += int(len(p) + len(r) > len(ids))
            sequences.append((ids, start))
        self.model.eval()
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        out = np.empty((len(sequences), self.model.config.hidden_size), dtype=np.float32)
        order = np.argsort([len(ids) for ids, _ in sequences], kind="stable")  # similar lengths per batch
        for begin in range(0, len(order), self.batch_size):
            rows = order[begin: begin + self.batch_size]
            width = max(len(sequences[i][0]) for i in rows)
            input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
            attention = torch.zeros((len(rows), width), dtype=torch.long)
            pool = torch.zeros((len(rows), width))
            for k, i in enumerate(rows):
                ids, start = sequences[i]
                input_ids[k, : len(ids)] = torch.tensor(ids)
                attention[k, : len(ids)] = 1
                pool[k, start: len(ids)] = 1.0
            hidden = self.model(input_ids=input_ids, attention_mask=attention, output_hidden_states=True).hidden_states
            states = hidden[self.layer].float()
            out[rows] = ((states * pool[..., None]).sum(1) / pool.sum(1, keepdim=True)).numpy()
        return out


class RewardModelScorer:
    """A fixed reward model: ``margin = r(prompt, first) − r(prompt, second)`` from a local folder.

    The folder holds an ``AutoModelForSequenceClassification`` and its tokenizer (``save_pretrained``); one
    label: its logit is the reward; two labels: logit 1 minus logit 0. Text is ``prompt + response``, cut from
    the left to ``max_length`` tokens. It must never have been trained on the pairs it scores.
    """

    name = "reward-model"

    def __init__(self, path: str | os.PathLike, *, max_length: int = 512, batch_size: int = 16):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder}: not a model folder (no config.json); expected a save_pretrained "
                                    "AutoModelForSequenceClassification folder")
        self.model = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True)
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        if self.model.config.num_labels not in (1, 2):
            raise ValueError(f"{folder}: a reward model has 1 or 2 labels; this one has {self.model.config.num_labels}")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.tokenizer.truncation_side = "left"
        self.tokenizer.padding_side = "right"
        self.max_length, self.batch_size = max_length, batch_size

    @torch.no_grad()
    def rewards(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """(n,) rewards of ``prompt + response``."""
        self.model.eval()
        texts = [p + r for p, r in zip(prompts, responses, strict=True)]
        out = []
        for begin in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(texts[begin: begin + self.batch_size], padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt")
            logits = self.model(**batch).logits.float()
            out.append((logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0]).numpy())
        return np.concatenate(out) if out else np.empty(0)

    def __call__(self, prompts: Sequence[str], first: Sequence[str], second: Sequence[str]) -> np.ndarray:
        return self.rewards(prompts, first) - self.rewards(prompts, second)


def make_scorer(name: str, *, path: str | os.PathLike | None = None, model=None, tokenizer=None, **options):
    """The scorer called ``name`` (one of :data:`SCORERS`).

    ``"bow"``: :class:`BagOfWordsFeatures` (``options``: ``max_words``). ``"embeddings"``:
    :class:`EmbeddingFeatures` from ``model``/``tokenizer``, else the folder ``path``, else the default model
    (``options``: ``max_length``, ``batch_size``, ``layer``, ``l2``). ``"reward-model"``:
    :class:`RewardModelScorer` from the folder ``path`` (required).
    """
    if name == "bow":
        return BagOfWordsFeatures(**options)
    if name == "embeddings":
        return EmbeddingFeatures(model, tokenizer, path=path, **options)
    if name == "reward-model":
        if path is None:
            raise ValueError("the reward-model scorer needs the path of a local AutoModelForSequenceClassification folder")
        return RewardModelScorer(path, **options)
    raise ValueError(f"unknown scorer {name!r}; choose one of {', '.join(SCORERS)}")


def scorer_name(scorer: object) -> str:
    """A scorer's name for reports: its ``name`` attribute, else its function or class name."""
    return str(getattr(scorer, "name", None) or getattr(scorer, "__name__", None) or type(scorer).__name__)


def is_feature_scorer(scorer: object) -> bool:
    """Whether ``scorer`` is cross-fitted (has ``features``) rather than a fixed margin callable."""
    return callable(getattr(scorer, "features", None))


# ----------------------------------------------------------------------------------------------- cross-fitting


def fit_pair_logistic(features: torch.Tensor, *, l2: float = 1e-3, steps: int = 100) -> torch.Tensor:
    """Weights w of ``P(first ≻ second) = σ(w·x)`` fitted to pairs all labelled "first better".

    Args:
        features: (n, d) differences φ(first) − φ(second) of the labelled pairs.
        l2: ridge penalty on w (per pair).
    Returns:
        (d,) weights. No intercept: swapping a pair negates x and the probability becomes 1 − p.
    """
    w = torch.zeros(features.shape[1], requires_grad=True)
    optimizer = torch.optim.LBFGS([w], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.softplus(-(features @ w)).mean() + l2 * (w @ w)
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach()


@dataclass(frozen=True)
class CrossFit:
    """K fold models of a pair logistic regression.

    Attributes:
        margins: (n,) out-of-fold margins of the fitted pairs (> 0: the model agrees with the label).
        weights: (n_folds, d) each fold model's weights (on standardised features when ``scale`` is set).
        scale: (d,) per-feature scale the features are divided by, or None.
    """

    margins: np.ndarray
    weights: torch.Tensor
    scale: torch.Tensor | None

    def fold_margins(self, x: np.ndarray, *, seed: int = 0) -> np.ndarray:
        """(n,) margins of other pairs' feature differences x (n, d), each under one fold model (balanced,
        seeded), so that they see the same scorer distribution as the cross-fitted pairs (the fold models' mean
        would be a better scorer than any fold, and its error would not be the one the out-of-fold margins
        carry)."""
        xt = _standardised(torch.as_tensor(x, dtype=torch.float32), self.scale)
        fold = torch.from_numpy(np.random.default_rng(seed).permutation(len(xt)) % self.weights.shape[0])
        return (xt * self.weights[fold]).sum(dim=1).numpy()


def _standardised(x: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    return x if scale is None else x / scale


def cross_fit(x: np.ndarray, *, n_folds: int = 5, seed: int = 0, l2: float = 1e-3, standardize: bool = False) -> CrossFit:
    """Cross-fitted logistic regression on pair feature differences ``x`` (n, d), all labelled "first better".

    With ``standardize``, features are divided by their root mean square over the pairs (no centring: the
    model has no intercept and must stay antisymmetric, σ(w·(−x)) = 1 − σ(w·x)).
    """
    n = len(x)
    if n < 2 * n_folds:
        raise ValueError(f"need at least {2 * n_folds} pairs for {n_folds}-fold cross-fitting; got {n}")
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    scale = xt.pow(2).mean(0).sqrt().clamp_min(1e-8) if standardize else None
    xt = _standardised(xt, scale)
    folds = np.random.default_rng(seed).permutation(n) % n_folds
    margins = np.empty(n)
    weights = []
    for k in range(n_folds):
        test = torch.from_numpy(folds == k)
        w = fit_pair_logistic(xt[~test], l2=l2)
        margins[test.numpy()] = (xt[test] @ w).numpy()
        weights.append(w)
    return CrossFit(margins=margins, weights=torch.stack(weights), scale=scale)


def pair_differences(scorer, prompts: Sequence[str], first: Sequence[str], second: Sequence[str]) -> np.ndarray:
    """(n, d) feature differences φ(prompt, first) − φ(prompt, second) of a feature scorer."""
    return np.asarray(scorer.features(prompts, first)) - np.asarray(scorer.features(prompts, second))
