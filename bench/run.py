"""Run every benchmark in bench/ (``make bench``). Each prints ratios against a baseline
measured in the same run; absolute times on a shared machine are not comparable."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

BENCHES = [
    ("audit_chain.py", ["--events", "1000", "--postgres"]),
    ("envelope.py", ["--mib", "256"]),
    ("ingest.py", ["--rows", "5000000", "--rounds", "3"]),
    ("query.py", ["--rows", "10000000", "--rounds", "3"]),
    ("migrate.py", ["--rounds", "3"]),
    ("api.py", ["--clients", "50", "--seconds", "20"]),
]

if __name__ == "__main__":
    here = Path(__file__).parent
    for script, args in BENCHES:
        print(f"== {script} {' '.join(args)}")
        sys.argv = [script, *args]
        runpy.run_path(str(here / script), run_name="__main__")
