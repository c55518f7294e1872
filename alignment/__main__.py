"""``python -m alignment ...``: see :mod:`alignment.cli`."""

from .cli import main

raise SystemExit(main())
