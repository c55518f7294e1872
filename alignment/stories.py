"""Story openings and the ground-truth sentiment reward of the controlled experiment.

**Prompts.** :data:`STORY_OPENINGS`: 132 TinyStories-style openings, every combination of 12 child names
(with their pronoun) and 11 opening templates, e.g. ``"Lily went to the park with her mom. She felt"``.
Each ends on a whole word, so a sampled continuation starts with a space.

**Reward.** :func:`sentiment_reward`: the text is lower-cased and split into words (``[a-z']+``);

    r(text) = #(words in POSITIVE_WORDS) − #(words in NEGATIVE_WORDS)

an integer, 0 for a neutral text. The lexicons (:data:`POSITIVE_WORDS`, :data:`NEGATIVE_WORDS`) are the
emotion words TinyStories uses most (happy, smiled, love, fun ... / sad, cried, angry, scared ...). It plays
the part of the IMDb sentiment classifier in the rDPO paper's experiment: a reward the policy can raise only
by changing what its stories say.
"""

from __future__ import annotations

from .scorers import words

NAMES: tuple[tuple[str, str, str], ...] = (
    ("Lily", "She", "her"), ("Tom", "He", "his"), ("Mia", "She", "her"), ("Ben", "He", "his"),
    ("Sue", "She", "her"), ("Max", "He", "his"), ("Anna", "She", "her"), ("Sam", "He", "his"),
    ("Lucy", "She", "her"), ("Tim", "He", "his"), ("Sara", "She", "her"), ("Jack", "He", "his"),
)

TEMPLATES: tuple[str, ...] = (
    "Once upon a time, there was a little child named {name}. {She}",
    "{name} went to the park with {her} mom. {She} felt",
    "One day, {name} found a big box in the garden. {She} opened it and",
    "{name} saw a dog in the street. The dog was",
    "{name} wanted to play with the red ball, but",
    "It was a rainy day. {name} looked out of the window and",
    "{name} lost {her} favorite toy. {She} looked everywhere and",
    "At school, {name} met a new friend. They",
    "{name} had a big kite. When the wind came, {name}",
    "The little bird could not fly. {name} saw it and",
    "{name} and {her} dad baked a cake. When it was ready, {name}",
)

#: The prompts of the experiment: len(NAMES) × len(TEMPLATES) = 132 openings.
STORY_OPENINGS: tuple[str, ...] = tuple(
    template.format(name=name, She=she, her=her) for template in TEMPLATES for name, she, her in NAMES
)

POSITIVE_WORDS: frozenset[str] = frozenset(
    """happy happily glad smile smiled smiles smiling love loved loves lovely fun laugh laughed laughing
    nice good great kind friend friends friendly best beautiful excited proud joy enjoyed enjoy yummy
    special pretty wonderful thank thanked safe hug hugged care cared gentle brave amazing cheer cheered
    delicious fantastic""".split()
)

NEGATIVE_WORDS: frozenset[str] = frozenset(
    """sad sadly cried cry cries crying angry mad scared scary afraid hurt hurts bad upset lonely sorry
    fight broke broken lost mean naughty worried frightened dangerous shouted yelled ouch pain sick tears
    hate hated fear terrible ugly dark alone""".split()
)


def sentiment_reward(text: str) -> float:
    """Ground-truth reward: positive-word count minus negative-word count (see the module docstring)."""
    tokens = words(text)
    return float(sum(w in POSITIVE_WORDS for w in tokens) - sum(w in NEGATIVE_WORDS for w in tokens))
