"""robustrec: implicit-feedback recommenders trained with noisy-label robust objectives.

Subpackages: ``robustrec.noise`` (noise-rate estimation and injection, numpy/torch only),
``robustrec.data`` (interaction logs), models, objectives, samplers, training and evaluation.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy: ``import robustrec.noise`` must not pull torchrec in.
    if name in ("Recommender", "ranking_metrics_at_k"):
        from robustrec import api

        return getattr(api, name)
    raise AttributeError(f"module 'robustrec' has no attribute {name!r}")
