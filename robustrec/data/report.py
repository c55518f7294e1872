"""What a loader did to the input: rows read, duplicates merged, interactions dropped, with counts.

Nothing is dropped silently: every loader fills a :class:`LoadReport`, attaches it to what it returns
(``Interactions.report`` / ``Split.report``) and logs its summary on the ``robustrec.data`` logger (INFO, or WARNING
when anything was dropped or merged).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

__all__ = ["LoadReport"]

logger = logging.getLogger("robustrec.data")


@dataclass(frozen=True)
class LoadReport:
    """Counts of what a loader read, merged and dropped.

    Each mapping is keyed by the part of the data set it concerns: ``"all"`` for a single log, or ``"train"``,
    ``"validation"``, ``"test"`` for a file's own split.
    """

    source: str
    format: str
    rows_read: dict[str, int] = field(default_factory=dict)
    """(user, item) rows read per part, before any merging or dropping."""
    duplicates_merged: dict[str, int] = field(default_factory=dict)
    """Rows folded into an earlier row with the same (user, item) (max rating, latest timestamp kept)."""
    empty_users: dict[str, int] = field(default_factory=dict)
    """Users listed without any item (LightGCN lines holding only a user id; empty JSON lists)."""
    blank_lines: dict[str, int] = field(default_factory=dict)
    """Blank lines skipped."""
    dropped_unseen: dict[str, int] = field(default_factory=dict)
    """Held-out interactions dropped because their user or item never occurs in the training part (cold start:
    no recommender trained on the training part can score them)."""
    dropped_in_train: dict[str, int] = field(default_factory=dict)
    """Held-out interactions dropped because the same (user, item) is also in the training part (full-ranking
    evaluation masks training items, so such a test item could never be hit)."""

    @property
    def n_dropped(self) -> int:
        """Interactions read but not kept (merged duplicates excluded: their pair is kept once)."""
        return sum(self.dropped_unseen.values()) + sum(self.dropped_in_train.values())

    def summary(self) -> str:
        parts = ["read " + ", ".join(f"{k} {v:,}" for k, v in self.rows_read.items())]
        for name in ("duplicates_merged", "empty_users", "blank_lines", "dropped_unseen", "dropped_in_train"):
            counts = {k: v for k, v in getattr(self, name).items() if v}
            if counts:
                parts.append(name.replace("_", " ") + " " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
        return f"{self.source} ({self.format}): " + "; ".join(parts)

    def log(self) -> None:
        noteworthy = self.n_dropped or any(self.duplicates_merged.values()) or any(self.empty_users.values())
        logger.log(logging.WARNING if noteworthy else logging.INFO, "%s", self.summary())
