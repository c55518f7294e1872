"""robustrec: implicit-feedback recommenders trained with noisy-label robust objectives.

Subpackages: ``robustrec.noise`` (noise-rate estimation and injection, numpy/torch only),
``robustrec.data`` (interaction logs), models, objectives, samplers, training and evaluation.
"""

__version__ = "0.1.0"
