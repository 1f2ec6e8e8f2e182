"""Migration throughput: ``hdh migrate run`` as a ratio to rclone over the same objects,
Azurite to SeaweedFS, measured in the same run.

Two sets of objects are written to an Azurite container through the hub (encrypted and
recorded, as the hub holds them): many small objects (default 1,000 x 256 KiB) and a few
large ones (default 4 x 64 MiB, streamed in parts). Each set is then copied to an empty
SeaweedFS bucket twice:

- by ``run_migration`` (the path of ``hdh migrate run``): SHA-256 of every object checked
  against the hub's record as it is read, the S3 request's SHA-256 checked by the server,
  the object read back from the target and hashed again, its state committed;
- by ``rclone copy`` (Debian's rclone; ``make bench`` installs it) with the same number of
  transfers at once, which checks sizes and, where both sides know one, MD5.

The ratio is rclone's time over hdh's: above 1, hdh is faster. The copies are checked to
hold the same bytes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hdh.devservers import AzuriteServer, SeaweedFSServer
from hdh.hub import Hub, init_hub
from hdh.identity.service import operator
from hdh.migrate.service import cutover, plan_migration, run_migration
from hdh.storage.locations import LocationSpec, add_location, get_location
from hdh.storage.objects import backend_for, write_object

ADMIN = operator("os:bench")


def locations(hub: Hub, azure: AzuriteServer, s3: SeaweedFSServer, container: str) -> None:
    with hub.transaction() as session:
        add_location(session, LocationSpec(
            name="azure", kind="azure", provider="eu-blob", account=azure.account,
            container=container, endpoint=azure.endpoint, country="FR",
        ), actor=ADMIN.actor)  # fmt: skip
    os.environ["HDH_LOC_AZURE_ACCOUNT_KEY"] = azure.key


def target(hub: Hub, s3: SeaweedFSServer, name: str) -> str:
    bucket = s3.create_bucket(f"b-{uuid.uuid4().hex[:12]}")
    with hub.transaction() as session:
        add_location(session, LocationSpec(
            name=name, preset="seaweedfs", endpoint=s3.endpoint, bucket=bucket, country="FR",
            certifications=["secnumcloud"],
        ), actor=ADMIN.actor)  # fmt: skip
    env = name.upper().replace("-", "_")
    os.environ[f"HDH_LOC_{env}_ACCESS_KEY_ID"] = s3.access_key
    os.environ[f"HDH_LOC_{env}_SECRET_ACCESS_KEY"] = s3.secret_key
    return bucket


def sas_url(azure: AzuriteServer, container: str) -> str:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    token = generate_container_sas(
        azure.account, container, account_key=azure.key,
        permission=ContainerSasPermissions(read=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=2),
    )  # fmt: skip
    return f"{azure.endpoint}/{container}?{token}"


def rclone(azure: AzuriteServer, s3: SeaweedFSServer, container: str, prefix: str,
           bucket: str, transfers: int) -> float:  # fmt: skip
    env = {
        # AWS_* settings of this shell (a CA bundle) are not rclone's business here.
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "RCLONE_CONFIG_AZ_TYPE": "azureblob",
        # Debian's rclone 1.60 reaches an emulator at another address only by a SAS URL.
        "RCLONE_CONFIG_AZ_SAS_URL": sas_url(azure, container),
        "RCLONE_CONFIG_SW_TYPE": "s3",
        "RCLONE_CONFIG_SW_PROVIDER": "SeaweedFS",
        "RCLONE_CONFIG_SW_ACCESS_KEY_ID": s3.access_key,
        "RCLONE_CONFIG_SW_SECRET_ACCESS_KEY": s3.secret_key,
        "RCLONE_CONFIG_SW_ENDPOINT": s3.endpoint,
        "RCLONE_CONFIG_SW_REGION": s3.region,
    }
    began = time.perf_counter()
    done = subprocess.run(
        ["rclone", "copy", f"az:{container}/{prefix}", f"sw:{bucket}/{prefix}",
         "--transfers", str(transfers), "--checkers", str(2 * transfers), "--config", "/dev/null"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode:
        raise SystemExit(f"rclone failed: {done.stderr[-2000:]}")
    return time.perf_counter() - began


def scenario(hub: Hub, azure: AzuriteServer, s3: SeaweedFSServer, container: str, *,
             label: str, count: int, size: int, transfers: int) -> None:  # fmt: skip
    prefix = f"datasets/{label}"
    payload = os.urandom(size)
    for i in range(count):
        # Distinct objects: the same random bytes with the index in front.
        write_object(hub, "azure", f"{prefix}/o-{i:05d}", [i.to_bytes(4, "big"), payload],
                     actor=ADMIN.actor)  # fmt: skip
    total = count * size / 1e6
    target(hub, s3, f"hdh-{label}")
    plan = plan_migration(hub, ADMIN, "azure", f"hdh-{label}")
    began = time.perf_counter()
    done = run_migration(hub, ADMIN, plan.id, concurrency=transfers)
    hdh_s = time.perf_counter() - began
    assert (done.copied, done.failed) == (count, []), done
    theirs = s3.create_bucket(f"r-{uuid.uuid4().hex[:12]}")
    rclone_s = rclone(azure, s3, container, prefix, theirs, transfers)
    with hub.read() as session:
        source = backend_for(hub, get_location(session, "azure"))
    probe = f"{prefix}/o-{count - 1:05d}"
    client = s3.client()
    assert client.get_object(Bucket=theirs, Key=probe)["Body"].read() == source.get(probe)
    cutover(hub, ADMIN, plan.id)  # the next scenario plans from the same source
    print(
        f"{label:>6}: {count} x {size / 2**10:,.0f} KiB, {transfers} at once | "
        f"hdh {hdh_s:6.2f} s ({total / hdh_s:5.1f} MB/s) | "
        f"rclone {rclone_s:6.2f} s ({total / rclone_s:5.1f} MB/s) | "
        f"hdh/rclone speed {rclone_s / hdh_s:4.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000, help="small objects")
    parser.add_argument("--small-kib", type=int, default=256)
    parser.add_argument("--large", type=int, default=4, help="large objects")
    parser.add_argument("--large-mib", type=int, default=64)
    parser.add_argument("--transfers", type=int, default=4, help="copies at once, both tools")
    args = parser.parse_args()
    if shutil.which("rclone") is None:
        raise SystemExit("rclone is not installed: apt-get install rclone (make bench does)")
    with (
        tempfile.TemporaryDirectory() as tmp,
        AzuriteServer() as azure,
        SeaweedFSServer() as s3,
        init_hub(Path(tmp) / "hub", database_url="sqlite:///hub.db", actor="b") as hub,
    ):
        container = azure.create_container(f"c-{uuid.uuid4().hex[:12]}")
        locations(hub, azure, s3, container)
        scenario(hub, azure, s3, container, label="small", count=args.small,
                 size=args.small_kib * 1024, transfers=args.transfers)  # fmt: skip
        scenario(hub, azure, s3, container, label="large", count=args.large,
                 size=args.large_mib * 2**20, transfers=args.transfers)  # fmt: skip


if __name__ == "__main__":
    main()
