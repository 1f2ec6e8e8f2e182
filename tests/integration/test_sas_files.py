"""Every SAS file of the public test data ingests, and the ones that come with their
expected contents give exactly those values (SQLite; the storage path is the same as
for any other format)."""

from __future__ import annotations

import csv
from datetime import date, datetime
from pathlib import Path

import pytest

from hdh.hub import Hub, init_hub
from hdh.ingest.readers import BadSource
from hdh.ingest.service import ingest, read_version
from tests.conftest import SHARED_DATA

SAS = SHARED_DATA / "sas7bdat"
FILES = sorted(p for p in SAS.rglob("*") if p.suffix in (".sas7bdat", ".xpt", ".xpt5", ".xpt8"))
#: Files pyreadstat cannot read, or that hold no column at all: refused, with the reason.
REFUSED = {"zero_variables.sas7bdat": "cannot be read as SAS data"}
#: The American Housing Survey files' CONTROL is a household number (the hub takes its
#: twelve digits for a phone number): the steward pseudonymises it.
RULES = {"data_AHS2013": ["CONTROL=pseudonymise"]}


@pytest.fixture(scope="module")
def sas_hub(tmp_path_factory: pytest.TempPathFactory) -> Hub:
    return init_hub(tmp_path_factory.mktemp("sas") / "hub", actor="test:init")


def expected(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(SAS)) for p in FILES])
def test_every_sas_file_ingests(sas_hub: Hub, path: Path) -> None:
    name = "sas-" + str(path.relative_to(SAS)).lower().replace("/", "-").replace(".", "-")
    if path.name in REFUSED:
        with pytest.raises(BadSource, match=REFUSED[path.name]):
            ingest(sas_hub, path, name=name, actor="os:steward")
        return
    rules = RULES.get(path.parent.name, [])
    result = ingest(sas_hub, path, name=name, actor="os:steward", rules=rules)
    table = read_version(sas_hub, name)
    assert table.num_rows == result.rows
    assert table.num_columns > 0


def _second(text: str) -> str:
    day, _, clock = text.rpartition("T")
    clock = clock.split(".")[0].zfill(8) if clock else ""
    return f"{day}T{clock}" if day else clock


def _as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@pytest.mark.parametrize(
    ("source", "contents"),
    [
        ("pyreadstat/basic/sample.sas7bdat", "pyreadstat/basic/sample.csv"),
        ("pyreadstat/basic/sample_bincompressed.sas7bdat", "pyreadstat/basic/sample.csv"),
        ("pyreadstat/basic/sample.xpt", "pyreadstat/basic/sample.csv"),
        ("pyreadstat/basic/dates.sas7bdat", "pyreadstat/basic/dates.csv"),
    ],
)
def test_values_match_the_expected_contents(sas_hub: Hub, source: str, contents: str) -> None:
    name = "x-" + source.rsplit("/", 1)[1].lower().replace(".", "-").replace("_", "-")
    ingest(sas_hub, SAS / source, name=name, actor="os:steward")
    table = read_version(sas_hub, name)
    rows = expected(SAS / contents)
    assert table.num_rows == len(rows)
    columns = {c.lower(): c for c in table.column_names}
    for column in rows[0]:
        got = [_as_text(v) for v in table.column(columns[column.lower()]).to_pylist()]
        want = [r[column] for r in rows]
        if column in ("dtime", "time", "mytime"):
            # The CSV writes times with microseconds, and midnight as 0:00:00: compare
            # to the second, as HH:MM:SS.
            got, want = [_second(v) for v in got], [_second(v) for v in want]
        assert got == want, column
