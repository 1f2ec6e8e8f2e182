"""Ingesting real files into immutable, pseudonymised, encrypted versions, and refusing
bad ones with nothing published. On SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import json
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hdh import audit
from hdh.crypto.parquet import decryption_properties
from hdh.errors import IntegrityError
from hdh.hub import Hub
from hdh.ingest import readers, service
from hdh.ingest.readers import BadSource
from hdh.ingest.service import (
    IdentifiersFound,
    IngestOptions,
    ingest,
    ingest_folder,
    list_datasets,
    read_version,
    versions,
)
from hdh.storage.backend import Backend
from tests.conftest import SHARED_DATA

GIBLEED = SHARED_DATA / "omop_eunomia_gibleed"
PATIENTS = SHARED_DATA / "synthea_csv_100_ma" / "csv" / "patients.csv"
ACTOR = "os:steward"
PATIENT_RULES = [
    "Id=pseudonymise", "SSN=pseudonymise", "DRIVERS=drop", "PASSPORT=drop", "PREFIX=drop",
    "FIRST=drop", "LAST=drop", "SUFFIX=drop", "MAIDEN=drop", "ADDRESS=drop", "LAT=drop",
    "LON=drop", "BIRTHDATE=year", "DEATHDATE=month", "ZIP=department",
]  # fmt: skip


def stored_bytes(hub: Hub) -> bytes:
    return b"".join(
        p.read_bytes() for p in (hub.settings.hub_dir / "storage").rglob("*") if p.is_file()
    )


def test_omop_csv_and_parquet_give_the_same_rows(hub: Hub) -> None:
    from_csv = ingest(hub, GIBLEED / "csv" / "person.csv.gz", name="person-csv", actor=ACTOR)
    from_parquet = ingest(
        hub, GIBLEED / "parquet" / "person.parquet", name="person-parquet", actor=ACTOR
    )
    assert from_csv.rows == from_parquet.rows == 2694
    assert (
        read_version(hub, "person-csv").to_pylist()
        == read_version(hub, "person-parquet").to_pylist()
    )
    stored = stored_bytes(hub)
    assert b"person_source_value" not in stored
    assert b"001f4a87-70d0-435c-a4b9-1425f6928d33" not in stored


def test_the_same_source_is_reported_not_duplicated(hub: Hub) -> None:
    first = ingest(hub, GIBLEED / "csv" / "death.csv.gz", name="death", actor=ACTOR)
    again = ingest(hub, GIBLEED / "csv" / "death.csv.gz", name="death", actor=ACTOR)
    assert (again.already, again.version) == (True, first.version)
    assert [v.number for v in versions(hub, "death")] == [1]


def test_direct_identifiers_need_a_rule(hub: Hub) -> None:
    with pytest.raises(IdentifiersFound) as caught:
        ingest(hub, PATIENTS, name="patients", actor=ACTOR)
    message = str(caught.value)
    for column in ("SSN", "FIRST", "LAST", "ADDRESS", "LAT", "LON", "PASSPORT", "DRIVERS"):
        assert f"{column} (its name suggests" in message
    assert list_datasets(hub) == []
    with hub.read() as session:
        failure = audit.list_events(session)[-1]
    assert (failure.action, failure.outcome) == ("dataset.ingest", "failure")

    result = ingest(hub, PATIENTS, name="patients", actor=ACTOR, rules=PATIENT_RULES)
    assert result.rows == 107
    table = read_version(hub, "patients")
    assert "FIRST" not in table.schema.names
    raw = PATIENTS.read_text()
    first_ssn = raw.splitlines()[1].split(",")[3]
    assert first_ssn not in json.dumps(table.to_pylist(), default=str)
    assert len(table.column("SSN")[0].as_py()) == 32
    assert table.column("BIRTHDATE")[0].as_py() == 2011
    assert first_ssn.encode() not in stored_bytes(hub)


def test_pseudonyms_join_across_datasets(hub: Hub, tmp_path: Path) -> None:
    ingest(hub, PATIENTS, name="patients", actor=ACTOR, rules=PATIENT_RULES)
    lines = PATIENTS.read_text().splitlines()
    subset = tmp_path / "ssn.csv"
    subset.write_text("SSN;flag\n" + "".join(f"{ln.split(',')[3]};1\n" for ln in lines[1:6]))
    ingest(hub, subset, name="flags", actor=ACTOR, rules=["SSN=pseudonymise"])
    patients = set(read_version(hub, "patients").column("SSN").to_pylist())
    flags = read_version(hub, "flags").column("SSN").to_pylist()
    assert len(flags) == 5
    assert set(flags) <= patients


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.csv", b"", "empty.csv: the file is empty (0 bytes)"),
        ("ragged.csv", b"a,b,c\n1,2,3\n4,5\n", "ragged.csv: a row has the wrong number of fields"),
        ("latin.csv", "nom;ville\nÉlodie;Besançon\n".encode("latin-1") * 50,
         "latin.csv: is not valid utf-8 text"),
        ("cut.csv.gz", gzip.compress(b"a,b\n" + b"".join(b"%d,%d\n" % (i, i * 7919 % 10007)
                                                     for i in range(200_000)))[:100_000],
         "cut.csv.gz: the compressed data is cut or damaged"),
        ("fake.parquet", b"a,b\n1,2\n", "fake.parquet: is not a Parquet file"),
        ("fake.csv.gz", b"a,b\n1,2\n", "fake.csv.gz: is not gzip-compressed"),
        ("dup.csv", b"a,b,a\n1,2,3\n", "dup.csv: column 'a' appears twice"),
        ("noname.csv", b"a,,c\n1,2,3\n", "noname.csv: column 2 has no name"),
        ("binary.csv", b"\x00\x01\x02" * 100, "binary.csv: holds binary data, not CSV text"),
        ("notes.docx", b"PK\x03\x04", "notes.docx: is not a format hdh ingests"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_and_nothing_published(
    hub: Hub, tmp_path: Path, name: str, content: bytes, expected: str
) -> None:
    source = write(tmp_path / name, content)
    with pytest.raises(BadSource) as caught:
        ingest(hub, source, name="bad", actor=ACTOR)
    assert str(caught.value).startswith(expected)
    assert list_datasets(hub) == []
    assert stored_bytes(hub) == b""


def readers_left() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "hdh-read"]


def test_the_reader_running_ahead_stops_with_the_ingest(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The source is parsed on a thread of its own, batches ahead: whatever the outcome
    (published, already there, refused before or after the first batch), it stops."""
    monkeypatch.setattr(readers, "BATCH_BYTES", 4096)  # many batches from a small file
    rows = "".join(f"P{i:05d},{i % 7},{i * 3}\n" for i in range(20_000))
    good = write(tmp_path / "good.csv", ("pid,code,amount\n" + rows).encode())
    result = ingest(hub, good, name="good", actor=ACTOR, rules=["pid=pseudonymise"])
    assert (result.rows, readers_left()) == (20_000, [])
    assert read_version(hub, "good").column("code").to_pylist()[:8] == [0, 1, 2, 3, 4, 5, 6, 0]

    again = ingest(hub, good, name="good", actor=ACTOR, rules=["pid=pseudonymise"])
    assert (again.already, readers_left()) == (True, [])

    with pytest.raises(IdentifiersFound):
        ingest(hub, PATIENTS, name="patients", actor=ACTOR)
    assert readers_left() == []

    stored = stored_bytes(hub)
    late = write(tmp_path / "late.csv", ("pid,code,amount\n" + rows + "P1,2\n" + rows).encode())
    with pytest.raises(BadSource, match=r"late\.csv: a row has the wrong number of fields"):
        ingest(hub, late, name="late", actor=ACTOR, rules=["pid=pseudonymise"])
    assert readers_left() == []
    assert [d["name"] for d in list_datasets(hub)] == ["good"]
    assert stored_bytes(hub) == stored  # nothing of the refused file stayed

    # A folder's files are each read once to be checked, then again to be published.
    folder = tmp_path / "claims"
    folder.mkdir()
    for table in ("a", "b"):
        write(folder / f"{table}.csv", ("pid,code,amount\n" + rows).encode())
    done = ingest_folder(
        hub, folder, actor=ACTOR, options=IngestOptions(rules=("pid=pseudonymise",))
    )
    assert [r.rows for r in done.results] == [20_000, 20_000]
    assert readers_left() == []


def claims(tmp_path: Path, rows: int = 20_000) -> Path:
    lines = "".join(f"P{i % 3000:05d},{i % 7},{i * 3}\n" for i in range(rows))
    return write(tmp_path / "claims.csv", ("pid,code,amount\n" + lines).encode())


def test_parts_split_at_the_same_rows_and_give_the_profile_of_one_part(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches are handed to the writing thread while the next ones are pseudonymised,
    and parts are read back two at a time: parts still split at the same rows, hold the
    rows in the source's order, and give the profile of the same file stored as one part."""
    monkeypatch.setattr(readers, "BATCH_BYTES", 4096)
    source = claims(tmp_path)
    whole = ingest(hub, source, name="whole", actor=ACTOR, rules=["pid=pseudonymise"])
    monkeypatch.setattr(service, "ROWS_PER_PART", 3_000)
    split = ingest(hub, source, name="split", actor=ACTOR, rules=["pid=pseudonymise"])
    [one], [many] = versions(hub, "whole"), versions(hub, "split")
    counts = [part["rows"] for part in many.manifest["parts"]]
    assert len(counts) == 7
    assert sum(counts) == 20_000 == split.rows == whole.rows
    assert all(n >= 3_000 for n in counts[:-1])  # a part closes once it holds enough rows
    assert [p["key"].rsplit("/", 1)[1] for p in many.manifest["parts"]] == [
        f"part-{n:05d}.parquet" for n in range(7)
    ]
    assert read_version(hub, "split").to_pylist() == read_version(hub, "whole").to_pylist()
    assert many.manifest["profile"] == one.manifest["profile"]
    # Pseudonyms carry no minimum and maximum in the Parquet footer; other columns do.
    key = many.manifest["parts"][0]["key"]
    [stored] = [p for p in (hub.settings.hub_dir / "storage").rglob("*") if str(p).endswith(key)]
    footer = pq.ParquetFile(stored, decryption_properties=decryption_properties(hub.keys)).metadata
    kept = {footer.schema.column(c).name: footer.row_group(0).column(c).is_stats_set
            for c in range(footer.num_columns)}  # fmt: skip
    assert kept == {"pid": False, "code": True, "amount": True}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("failing", ["store", "read back"])
def test_a_part_that_fails_fails_the_ingest_and_leaves_nothing(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """A part that cannot be stored, or does not read back, fails the ingest with its own
    error, while later parts are queued or being read back (parts of about two batches:
    the batches queued behind a failed part fill the next one), and takes every part
    stored before it away."""
    monkeypatch.setattr(readers, "BATCH_BYTES", 4096)
    monkeypatch.setattr(service, "ROWS_PER_PART", 600)
    source = claims(tmp_path)
    ingest(hub, source, name="kept", actor=ACTOR, rules=["pid=pseudonymise"])
    before = stored_bytes(hub)
    calls: list[str] = []
    if failing == "store":
        real_put = Backend.put_file

        def put_file(self: Backend, key: str, path: Path) -> object:
            calls.append(key)
            if len(calls) == 3:
                raise OSError("the location went away")
            return real_put(self, key, path)

        monkeypatch.setattr(Backend, "put_file", put_file)
        expected: tuple[type[Exception], str] = (OSError, "went away")
    else:
        real_read = service.read_part

        def read_part(hub: Hub, backend: Backend, part: dict, **kw: object) -> object:
            calls.append(part["key"])
            if part["key"].endswith("part-00002.parquet"):
                raise IntegrityError("part 2 does not read back")
            return real_read(hub, backend, part, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(service, "read_part", read_part)
        expected = (IntegrityError, "part 2 does not read back")
    with pytest.raises(expected[0], match=expected[1]):
        ingest(hub, source, name="failed", actor=ACTOR, rules=["pid=pseudonymise"])
    assert len(calls) >= 3
    assert [d["name"] for d in list_datasets(hub)] == ["kept"]
    assert stored_bytes(hub) == before  # every part stored for "failed" was removed
    assert list((hub.settings.hub_dir / "tmp").rglob("*.parquet")) == []
    with hub.read() as session:
        failure = audit.list_events(session)[-1]
    assert (failure.action, failure.outcome) == ("dataset.ingest", "failure")


SAS = SHARED_DATA / "sas7bdat" / "pyreadstat"


def test_sas_transport_file_matches_its_expected_csv(hub: Hub) -> None:
    ingest(hub, SAS / "basic" / "sample.xpt", name="sample-xpt", actor=ACTOR)
    table = read_version(hub, "sample-xpt")
    expected = [line.split(",") for line in (SAS / "basic" / "sample.csv").read_text(
        encoding="utf-8-sig").splitlines()[1:]]  # fmt: skip
    assert table.column("MYCHAR").to_pylist() == [row[0] for row in expected]
    assert table.column("MYNUM").to_pylist() == [float(row[1]) for row in expected]
    assert [d.isoformat() if d else "" for d in table.column("MYDATE").to_pylist()] == [
        row[2] for row in expected
    ]
    [version] = versions(hub, "sample-xpt")
    assert version.manifest["source_metadata"]["formats"]["MYDATE"] == "YYMMDD10"


def test_sas7bdat_keeps_labels_and_formats(hub: Hub) -> None:
    ingest(hub, SAS / "sas_catalog" / "test_data_linux.sas7bdat", name="sas-catalog", actor=ACTOR)
    [version] = versions(hub, "sas-catalog")
    expected_rows = len((SAS / "sas_catalog" / "sas_formatted.csv").read_text().splitlines()) - 1
    assert version.rows == expected_rows
    metadata = version.manifest["source_metadata"]
    assert metadata["rows"] == expected_rows
    assert set(metadata["formats"]) == set(read_version(hub, "sas-catalog").schema.names)


def test_a_file_that_is_not_sas_is_refused(hub: Hub, tmp_path: Path) -> None:
    fake = write(tmp_path / "fake.sas7bdat", b"a,b\n1,2\n" * 20)
    with pytest.raises(BadSource, match=r"fake\.sas7bdat: is not a SAS7BDAT file"):
        ingest(hub, fake, name="fake", actor=ACTOR)


def test_identifiers_keep_their_leading_zeros(hub: Hub, tmp_path: Path) -> None:
    numeric = write(tmp_path / "a.csv", b"patient;x\n00123;1\n00124;2\n")
    text = write(tmp_path / "b.csv", b"patient;label\n00123;one\n")
    ingest(hub, numeric, name="a", actor=ACTOR, rules=["patient=pseudonymise"])
    ingest(hub, text, name="b", actor=ACTOR, rules=["patient=pseudonymise"])
    a = read_version(hub, "a").column("patient").to_pylist()
    assert read_version(hub, "b").column("patient").to_pylist() == [a[0]]


def test_new_rules_on_the_same_file_make_a_new_version(hub: Hub, tmp_path: Path) -> None:
    source = write(tmp_path / "c.csv", b"patient;x\nA;1\nB;2\n")
    ingest(hub, source, name="c", actor=ACTOR)
    assert ingest(hub, source, name="c", actor=ACTOR).already
    second = ingest(hub, source, name="c", actor=ACTOR, rules=["patient=pseudonymise"])
    assert (second.already, second.version) == (False, 2)


@pytest.mark.parametrize(
    ("content", "rules", "expected"),
    [
        (b"SSN;x\n", [], "has columns that look like direct identifiers: SSN"),
        (b"a,b;c\n1;2\n", [], "column 'a,b' contains ','"),
        (b"age;x\nold;1\n", ["age=band10"], "column 'age' holds string, and band10 needs ages"),
    ],
)
def test_more_refusals(
    hub: Hub, tmp_path: Path, content: bytes, rules: list[str], expected: str
) -> None:
    source = write(tmp_path / "r.csv", content)
    with pytest.raises(Exception) as caught:  # noqa: PT011  (each case has its own class)
        ingest(hub, source, name="r", actor=ACTOR, rules=rules)
    assert expected in str(caught.value)
    assert list_datasets(hub) == []
    with hub.read() as session:
        failure = audit.list_events(session)[-1]
    assert (failure.action, failure.outcome) == ("dataset.ingest", "failure")


def test_an_altered_or_swapped_part_is_caught(hub: Hub) -> None:
    from hdh.crypto.envelope import TamperedObject

    ingest(hub, GIBLEED / "csv" / "death.csv.gz", name="death", actor=ACTOR)
    ingest(hub, GIBLEED / "csv" / "observation_period.csv.gz", name="care", actor=ACTOR)
    storage = hub.settings.hub_dir / "storage"
    [death] = storage.glob("datasets/death/*/part-00000.parquet")
    [care] = storage.glob("datasets/care/*/part-00000.parquet")
    death.write_bytes(care.read_bytes())
    with pytest.raises(TamperedObject, match="does not match the SHA-256 recorded"):
        read_version(hub, "death")


def test_a_kek_wrapping_dataset_keys_cannot_be_retired(hub: Hub) -> None:
    from hdh.crypto.service import retire_key, rotate_keys
    from hdh.errors import Conflict

    ingest(hub, GIBLEED / "csv" / "death.csv.gz", name="death", actor=ACTOR)
    rotate_keys(hub, "clinical", actor=ACTOR)
    with pytest.raises(Conflict, match="still wraps the keys of 1 dataset version"):
        retire_key(hub, "clinical", 1, actor=ACTOR)
    read_version(hub, "death")  # still readable


def test_the_manifest_is_also_stored_encrypted_next_to_the_parts(hub: Hub) -> None:
    from hdh.errors import Conflict
    from hdh.storage.objects import read_all, write_object

    ingest(hub, GIBLEED / "csv" / "death.csv.gz", name="death", actor=ACTOR)
    [version] = versions(hub, "death")
    key = version.manifest["parts"][0]["key"].rsplit("/", 1)[0] + "/manifest.json"
    stored = json.loads(read_all(hub, "local", key))
    assert stored["source"]["sha256"] == version.source_sha256
    assert stored["parts"] == version.manifest["parts"]
    assert b"death.csv.gz" not in (hub.settings.hub_dir / "storage" / key).read_bytes()
    with pytest.raises(Conflict, match="cannot be replaced"):
        write_object(hub, "local", key, b"{}", actor=ACTOR)
