"""Shared test fixtures.

Real public data lives in ``../shared/data`` beside the repository (or wherever
``ROBUSTREC_SHARED_DATA`` points); tests that need it skip when it is absent,
because a user's fresh clone has no such folder.
"""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("ROBUSTREC_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """Path of ``../shared/data``; skips the test when the folder is absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} is absent")
    return path


@pytest.fixture
def fault_record():
    """``record(package, case, argv, code, line)``: with ``$ROBUSTREC_FAULT_CATALOGUE`` set to a file, a fault
    catalogue case that passed appends its outcome there as one JSON line (scripts/fault_catalogue.py prints the
    table); otherwise nothing."""
    import json

    def record(package: str, case: str, argv: list, code: int, line: str) -> None:
        path = os.environ.get("ROBUSTREC_FAULT_CATALOGUE")
        if path:
            with open(path, "a", encoding="utf-8") as out:
                out.write(json.dumps({"package": package, "case": case, "argv": [str(a) for a in argv],
                                      "code": code, "line": line}) + "\n")

    return record
