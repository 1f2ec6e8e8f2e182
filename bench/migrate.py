"""Migration throughput: ``hdh migrate run`` as a ratio to rclone over the same objects,
Azurite to SeaweedFS, and both as a fraction of a write-only upload, measured in the
same run.

Two sets of objects are written to two Azurite containers through the hub (encrypted
and recorded, as the hub holds them): 2,000 objects of 256 KiB and 8 of 64 MiB (the
defaults). In each round, each set is copied to a fresh SeaweedFS bucket three ways:

- ``run_migration`` (the path of ``hdh migrate run``), 16 objects at once: each object's
  SHA-256 is checked against the hub's record as it is read, sent with every upload
  request (SeaweedFS refuses a body that does not match it: ``BadDigest``), the stored
  size checked, and each outcome committed to the hub's database;
- ``rclone copy`` at its best settings here (``--transfers 16 --checkers 16
  --checksum``; Debian's rclone, which ``make bench`` installs);
- a write-only upload of as many bytes from memory, 16 at once, through the same client
  library the hub uses (obstore): what SeaweedFS takes on this machine when nothing is
  read;
- an unchecked copy: each object read whole from Azurite and written to SeaweedFS
  through obstore, 16 at once, with no hashing, no checksum sent and nothing recorded.
  It is no way to move health data; it shows what any copier built on this client
  library could reach here at best, next to what hdh does with every check it makes.

With ``--rekey``, each round also copies the set with a re-keying migration (every
object decrypted and encrypted again under a new data key, then read back and
decrypted), printed as its throughput and its ratio to the plain copy.

An untimed write-only upload first lets SeaweedFS grow its volumes. hdh, rclone and the
unchecked copy take turns going first. Printed: the median throughput of each, the median
ratio hdh/rclone (above 1: hdh is faster), each as a fraction of the write-only upload,
and the median ratio of the unchecked copy to rclone. All the processes share the
machine's cores, so a copier's own CPU use slows the servers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import obstore
from obstore.store import AzureStore, S3Store

from hdh.devservers import AzuriteServer, SeaweedFSServer
from hdh.hub import Hub, init_hub
from hdh.identity.service import operator
from hdh.migrate.service import cancel, plan_migration, run_migration
from hdh.storage.locations import LocationSpec, add_location, get_location
from hdh.storage.objects import backend_for, write_object

ADMIN = operator("os:bench")
TRANSFERS = 16


def _env_name(name: str) -> str:
    return name.upper().replace("-", "_")


def source(hub: Hub, azure: AzuriteServer, name: str) -> str:
    container = azure.create_container(f"c-{uuid.uuid4().hex[:12]}")
    with hub.transaction() as session:
        add_location(session, LocationSpec(
            name=name, kind="azure", provider="eu-blob", account=azure.account,
            container=container, endpoint=azure.endpoint, country="FR",
        ), actor=ADMIN.actor)  # fmt: skip
    os.environ[f"HDH_LOC_{_env_name(name)}_ACCOUNT_KEY"] = azure.key
    return container


def target(hub: Hub, s3: SeaweedFSServer, name: str) -> str:
    bucket = s3.create_bucket(f"b-{uuid.uuid4().hex[:12]}")
    with hub.transaction() as session:
        add_location(session, LocationSpec(
            name=name, preset="seaweedfs", endpoint=s3.endpoint, bucket=bucket, country="FR",
            certifications=["secnumcloud"],
        ), actor=ADMIN.actor)  # fmt: skip
    os.environ[f"HDH_LOC_{_env_name(name)}_ACCESS_KEY_ID"] = s3.access_key
    os.environ[f"HDH_LOC_{_env_name(name)}_SECRET_ACCESS_KEY"] = s3.secret_key
    return bucket


def fill(hub: Hub, name: str, count: int, size: int) -> int:
    """``count`` objects of ``size`` bytes of plaintext, written through the hub."""
    payload = os.urandom(size)
    for i in range(count):
        # Distinct objects: the same random bytes with the index in front.
        write_object(hub, name, f"datasets/{name}/o-{i:05d}", [i.to_bytes(4, "big"), payload],
                     actor=ADMIN.actor)  # fmt: skip
    with hub.read() as session:
        backend = backend_for(hub, get_location(session, name))
    return sum(item.size for item in backend.list())


def by_hdh(hub: Hub, s3: SeaweedFSServer, name: str, round_: int, *, rekey: bool = False) -> float:
    to = f"{name}-hdh{'-rekey' if rekey else ''}-{round_}"
    target(hub, s3, to)
    plan = plan_migration(hub, ADMIN, name, to, rekey=rekey)
    began = time.perf_counter()
    done = run_migration(hub, ADMIN, plan.id, concurrency=TRANSFERS)
    seconds = time.perf_counter() - began
    if done.copied != plan.objects or done.failed or done.corrupt:
        raise SystemExit(f"hdh did not copy everything: {done}")
    cancel(hub, ADMIN, plan.id)  # so that the next round can plan from the same source
    return seconds


def by_rclone(azure: AzuriteServer, s3: SeaweedFSServer, container: str) -> float:
    bucket = s3.create_bucket(f"r-{uuid.uuid4().hex[:12]}")
    env = {
        # This shell's AWS_CA_BUNDLE makes rclone's S3 client refuse to start.
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "RCLONE_CONFIG_AZ_TYPE": "azureblob",
        "RCLONE_CONFIG_AZ_USE_EMULATOR": "true",
        "RCLONE_CONFIG_AZ_ENDPOINT": azure.endpoint,
        "RCLONE_CONFIG_SW_TYPE": "s3",
        "RCLONE_CONFIG_SW_PROVIDER": "SeaweedFS",
        "RCLONE_CONFIG_SW_ACCESS_KEY_ID": s3.access_key,
        "RCLONE_CONFIG_SW_SECRET_ACCESS_KEY": s3.secret_key,
        "RCLONE_CONFIG_SW_ENDPOINT": s3.endpoint,
        "RCLONE_CONFIG_SW_REGION": s3.region,
    }
    began = time.perf_counter()
    done = subprocess.run(
        ["rclone", "copy", f"az:{container}", f"sw:{bucket}", "--transfers", str(TRANSFERS),
         "--checkers", str(TRANSFERS), "--checksum", "--config", "/dev/null"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - began
    if done.returncode:
        raise SystemExit(f"rclone failed: {done.stderr[-2000:]}")
    listed = s3.client().list_objects_v2(Bucket=bucket, MaxKeys=1)
    if not listed.get("KeyCount"):
        raise SystemExit("rclone copied nothing")
    return seconds


def _bucket(s3: SeaweedFSServer, prefix: str) -> S3Store:
    """A fresh bucket, through obstore with no checksum."""
    bucket = s3.create_bucket(f"{prefix}-{uuid.uuid4().hex[:12]}")
    return S3Store(
        bucket, endpoint=s3.endpoint, region=s3.region, access_key_id=s3.access_key,
        secret_access_key=s3.secret_key, virtual_hosted_style_request=False,
        client_options={"allow_http": True},
    )  # fmt: skip


def unchecked(azure: AzuriteServer, s3: SeaweedFSServer, container: str) -> float:
    """Every object of ``container`` read whole and written to a fresh bucket, TRANSFERS
    at once: nothing hashed, sent with a checksum, checked or recorded."""
    source = AzureStore(
        container, account_name=azure.account, account_key=azure.key,
        endpoint=azure.endpoint, client_options={"allow_http": True},
    )  # fmt: skip
    store = _bucket(s3, "u")
    keys = [meta["path"] for batch in obstore.list(source, chunk_size=1000) for meta in batch]

    def copy(key: str) -> None:
        obstore.put(store, key, obstore.get(source, key).bytes())

    began = time.perf_counter()
    with ThreadPoolExecutor(TRANSFERS) as pool:
        list(pool.map(copy, keys))
    return time.perf_counter() - began


def write_only(s3: SeaweedFSServer, count: int, size: int) -> float:
    """``count`` uploads of ``size`` bytes from memory, TRANSFERS at once."""
    store = _bucket(s3, "w")
    payload = os.urandom(size)

    def put(i: int) -> None:
        obstore.put(store, f"o-{i:05d}", i.to_bytes(4, "big") + payload[4:])

    began = time.perf_counter()
    with ThreadPoolExecutor(TRANSFERS) as pool:
        list(pool.map(put, range(count)))
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=2000, help="small objects")
    parser.add_argument("--small-kib", type=int, default=256)
    parser.add_argument("--large", type=int, default=8, help="large objects")
    parser.add_argument("--large-mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["small", "large"], help="one set only")
    parser.add_argument(
        "--rekey", action="store_true", help="also time a re-keying migration each round"
    )
    args = parser.parse_args()
    if shutil.which("rclone") is None:
        raise SystemExit("rclone is not installed: apt-get install rclone (make bench does)")
    sets = [
        ("small", args.small, args.small_kib * 1024),
        ("large", args.large, args.large_mib * 2**20),
    ]
    sets = [s for s in sets if args.only in (None, s[0])]
    with (
        tempfile.TemporaryDirectory() as tmp,
        AzuriteServer() as azure,
        SeaweedFSServer() as s3,
        init_hub(Path(tmp) / "hub", database_url="sqlite:///hub.db", actor="b") as hub,
    ):
        stored: dict[str, tuple[str, int]] = {}
        for name, count, size in sets:
            container = source(hub, azure, name)
            stored[name] = (container, fill(hub, name, count, size))
        for name, count, size in sets:
            container, total = stored[name]
            rates: dict[str, list[float]] = {
                "hdh": [], "rclone": [], "write-only": [], "unchecked": [],
            }  # fmt: skip
            write_only(s3, count, total // count)  # untimed: SeaweedFS grows its volumes
            for round_ in range(args.rounds):
                # Each copier goes first, second and third in turn.
                copiers = {
                    "hdh": partial(by_hdh, hub, s3, name, round_),
                    "rclone": partial(by_rclone, azure, s3, container),
                    "unchecked": partial(unchecked, azure, s3, container),
                }
                order = list(copiers)[round_ % 3 :] + list(copiers)[: round_ % 3]
                for who in order:
                    rates[who].append(total / copiers[who]() / 1e6)
                if args.rekey:
                    seconds = by_hdh(hub, s3, name, round_, rekey=True)
                    rates.setdefault("rekey", []).append(total / seconds / 1e6)
                rates["write-only"].append(total / write_only(s3, count, total // count) / 1e6)
            ratios = [h / r for h, r in zip(rates["hdh"], rates["rclone"], strict=True)]
            bound = [u / r for u, r in zip(rates["unchecked"], rates["rclone"], strict=True)]
            median = {who: statistics.median(r) for who, r in rates.items()}
            print(
                f"{name:>5}: {count} x {size / 2**10:,.0f} KiB ({total / 1e6:,.0f} MB stored), "
                f"{args.rounds} rounds, {TRANSFERS} at once | MB/s: hdh {median['hdh']:.1f}, "
                f"rclone {median['rclone']:.1f}, write-only {median['write-only']:.1f} | "
                f"hdh/rclone {statistics.median(ratios):.2f}x (rounds: "
                f"{', '.join(f'{r:.2f}' for r in ratios)}) | of write-only: "
                f"hdh {median['hdh'] / median['write-only']:.2f}, "
                f"rclone {median['rclone'] / median['write-only']:.2f} | unchecked copy "
                f"{median['unchecked']:.1f} MB/s, {statistics.median(bound):.2f}x rclone "
                f"(rounds: {', '.join(f'{r:.2f}' for r in bound)})"
            )
            if args.rekey:
                slower = [k / h for k, h in zip(rates["rekey"], rates["hdh"], strict=True)]
                print(
                    f"{name:>5}: hdh --rekey {median['rekey']:.1f} MB/s, "
                    f"{statistics.median(slower):.2f}x the plain copy (rounds: "
                    f"{', '.join(f'{r:.2f}' for r in slower)})"
                )


if __name__ == "__main__":
    main()
