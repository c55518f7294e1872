"""The fault catalogues of both packages as one Markdown table: runs tests/test_faults.py and
tests/align/test_faults.py with ``$ROBUSTREC_FAULT_CATALOGUE`` set, then prints each case's command, exit code,
one-line message and verdict (a case missing from the record failed its test).

    python scripts/fault_catalogue.py [--out docs/faults.md]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = {"robustrec": "tests/test_faults.py", "alignment": "tests/align/test_faults.py"}


def _case_ids(test_file: str) -> list[str]:
    listed = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", f"{test_file}::test_fault"],
                            cwd=ROOT, capture_output=True, text=True).stdout
    return re.findall(r"test_fault\[(.+)\]", listed)


def _tidy(text: str) -> str:
    """``text`` with each case's pytest folder written TMP (the tiny model's MODEL), for a Markdown cell."""
    text = re.sub(r"/tmp/(?:[^/ ]+/)*?pytest-\d+/tiny-llama\d*", "MODEL", text)  # the tests' tiny random Llama
    text = re.sub(r"/tmp/(?:[^/ ]+/)*?pytest-\d+/[^/ ]+", "TMP", text)
    return text.replace("|", "\\|")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        record = Path(tmp) / "catalogue.jsonl"
        env = {**os.environ, "ROBUSTREC_FAULT_CATALOGUE": str(record)}
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:warnings",
                        *(f"{f}::test_fault" for f in FILES.values())], cwd=ROOT, env=env)
        seen = {(r["package"], r["case"]): r for r in map(json.loads, record.read_text().splitlines())} \
            if record.exists() else {}
    rows = ["| package | case | command | exit | message (stderr, one line) | verdict |", "|---|---|---|---|---|---|"]
    failed = 0
    for package, test_file in FILES.items():
        for case in _case_ids(test_file):
            r = seen.get((package, case))
            if r is None:
                failed += 1
                rows.append(f"| {package} | {case} | | | | FAILED |")
                continue
            command = f"python -m {package} " + _tidy(" ".join(r["argv"]))
            message = _tidy(r["line"])
            rows.append(f"| {package} | {case} | `{command}` | {r['code']} | {message} | pass |")
    header = ("# Fault catalogue (generated)\n\n`python scripts/fault_catalogue.py --out "
              "benchmarks/results/fault_catalogue.md`: every parametrised case of tests/test_faults.py and "
              "tests/align/test_faults.py, run by pytest with `$ROBUSTREC_FAULT_CATALOGUE` set; a case is recorded only "
              "after its test passed (exit code, exactly one stderr line containing the expected text, no traceback, "
              "nothing half-written). TMP = the case's temporary folder, MODEL = the tests' tiny random Llama.\n\n")
    table = header + "\n".join(rows) + f"\n\n{len(rows) - 2} cases, {failed} failed.\n"
    print(table)
    if args.out:
        args.out.write_text(table)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
