"""The local key provider: data keys wrapped per sensitivity, rotation, retirement."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from hdh.crypto.keyfile import create_key_file
from hdh.crypto.keys import LocalKeyProvider, WrappedKey
from hdh.errors import Conflict, IntegrityError, InvalidInput


@pytest.fixture
def provider(tmp_path: Path) -> LocalKeyProvider:
    path = tmp_path / "hub.key"
    create_key_file(path, created_at="t0")
    return LocalKeyProvider(path)


def test_data_keys_wrap_and_unwrap_per_class(provider: LocalKeyProvider) -> None:
    key, wrapped = provider.new_data_key("clinical")
    assert len(key) == 32
    assert (wrapped.sensitivity, wrapped.kek_version) == ("clinical", 1)
    assert key not in wrapped.blob
    assert provider.unwrap(wrapped) == key
    # A wrapped key cannot be passed off as another class's.
    forged = WrappedKey("identifiers", 1, wrapped.blob)
    with pytest.raises(IntegrityError, match="does not unwrap"):
        provider.unwrap(forged)


def test_unknown_class_is_refused(provider: LocalKeyProvider) -> None:
    with pytest.raises(InvalidInput, match="'secret' is not a sensitivity class"):
        provider.new_data_key("secret")


def test_rotation_adds_a_version_and_rewraps(provider: LocalKeyProvider) -> None:
    key, old = provider.new_data_key("identifiers")
    assert provider.rotate("identifiers", created_at="t1") == 2
    assert provider.current_version("identifiers") == 2
    assert provider.current_version("clinical") == 1
    new = provider.rewrap(old)
    assert new.kek_version == 2
    assert provider.unwrap(new) == key
    assert provider.unwrap(old) == key  # v1 is kept until retired
    assert stat.S_IMODE(provider.path.stat().st_mode) == 0o600
    # Another provider reading the same file sees the rotation.
    assert LocalKeyProvider(provider.path).current_version("identifiers") == 2


def test_retired_version_is_destroyed(provider: LocalKeyProvider) -> None:
    key, old = provider.new_data_key("other")
    with pytest.raises(Conflict, match="is the current one"):
        provider.retire("other", 1)
    provider.rotate("other", created_at="t1")
    provider.retire("other", 1)
    with pytest.raises(IntegrityError, match="was retired"):
        provider.unwrap(old)
    document = json.loads(provider.path.read_text())
    assert document["keks"]["other"][0]["retired"] is True
    assert key.hex() not in provider.path.read_text()


def test_real_azure_endpoints_are_marked_us_cloud_act() -> None:
    from hdh.storage.locations import LocationSpec, build_location

    plain = build_location(
        LocationSpec(name="az", kind="azure", account="acct", container="c", region="westeurope"),
        created_at="t",
    )
    assert (plain.country, plain.extraterritorial) == ("NL", ["us-cloud-act"])


def test_pseudonyms_are_rfc2104_hmac_sha256_of_the_normalised_value() -> None:
    import hashlib
    import hmac

    from hdh.ingest.pseudonymise import Pseudonymiser

    secret = bytes(range(32))
    p = Pseudonymiser({}, secret, 1)
    expected = hmac.new(secret, b"1850578006084", hashlib.sha256).hexdigest()[:32]
    assert p.pseudonym(" 1 85 05 78 006 084 ") == expected
    assert p.pseudonym("1850578006084") == expected  # cached, same answer
    assert p.pseudonym("abc") == p.pseudonym("ABC")
    assert Pseudonymiser({}, b"other secret", 1).pseudonym("abc") != p.pseudonym("abc")


def test_a_provider_sees_a_rotation_and_a_retirement_made_by_another(
    provider: LocalKeyProvider,
) -> None:
    """Another process (here: another provider on the same file) rotates, then retires:
    a long-running one wraps under the new version at once and no longer unwraps with
    the retired one."""
    other = LocalKeyProvider(provider.path)
    _, old = provider.new_data_key("clinical")
    assert other.rotate("clinical", created_at="t1") == 2
    assert provider.current_version("clinical") == 2
    assert provider.new_data_key("clinical")[1].kek_version == 2
    other.retire("clinical", 1)
    with pytest.raises(IntegrityError, match="clinical key version 1 was retired"):
        provider.unwrap(old)
