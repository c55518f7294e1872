"""Noise-rate estimation and noise injection, shared by ``robustrec`` and ``alignment``.

Imports numpy (and torch where needed) only: no torchrec, no transformers.
"""
