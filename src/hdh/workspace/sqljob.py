"""Runs an SQL job inside its sandbox: ``python -m hdh.workspace.sqljob SCRIPT.sql``.

The statements run one after the other on ``hdh.workspace.connect()``; the rows of the
last one, when it returns rows, are written to ``result.csv`` in the output folder.
Other outputs can be written with ``COPY … TO 'name.csv'`` relative to the output folder
(the job's working directory). Errors name the statement that failed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb

import hdh.workspace as ws


def main(script: Path) -> int:
    statements = duckdb.extract_statements(script.read_text(encoding="utf-8"))
    if not statements:
        print("the script holds no statement", file=sys.stderr)
        return 2
    con = ws.connect()
    relation = None
    for number, statement in enumerate(statements, start=1):
        try:
            relation = con.sql(statement.query)
        except duckdb.Error as exc:
            first = str(exc).strip().splitlines()[0]
            print(f"statement {number} of {len(statements)} failed: {first}", file=sys.stderr)
            return 1
        print(f"statement {number} of {len(statements)}: {statement.type.name} done")
    if relation is not None:
        target = ws.output("result.csv")
        relation.write_csv(str(target))
        print(f"result: {target.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
