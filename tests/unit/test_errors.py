"""The error tree: stable exit codes and statuses, one-line messages, retryability."""

from __future__ import annotations

import hdh.errors as errors
from hdh.errors import DatabaseUnavailable, HubError, InvalidInput

# Scripts and API clients rely on these: changing one is a breaking change.
STABLE = {
    "HubError": (1, 500, False),
    "ConfigError": (3, 500, False),
    "NotFound": (4, 404, False),
    "HubNotFound": (4, 404, False),
    "Conflict": (5, 409, False),
    "FolderNotEmpty": (5, 409, False),
    "InvalidInput": (6, 422, False),
    "DatabaseUnavailable": (7, 503, True),
    "IntegrityError": (8, 500, False),
    "AuditChainBroken": (8, 500, False),
    "PermissionDenied": (9, 403, False),
}


def test_every_error_has_its_stable_codes() -> None:
    exported = {
        name: getattr(errors, name)
        for name in errors.__all__
        if isinstance(getattr(errors, name), type)
    }
    assert set(exported) == set(STABLE)
    for name, cls in exported.items():
        assert issubclass(cls, HubError)
        assert (cls.exit_code, cls.http_status, cls.retryable) == STABLE[name], name
    assert errors.EXIT_INTERNAL == 70


def test_codes_are_distinct_between_families() -> None:
    codes = {cls.code for cls in (getattr(errors, n) for n in STABLE)}
    assert len(codes) == len(STABLE)


def test_message_and_hint_make_one_line() -> None:
    err = InvalidInput("country must be two letters", hint="pass --country FR")
    assert str(err) == "country must be two letters: pass --country FR"
    assert err.to_dict() == {
        "code": "invalid_input",
        "message": "country must be two letters",
        "hint": "pass --country FR",
        "retryable": False,
    }
    assert str(HubError("plain")) == "plain"


def test_retryable_is_a_property_of_the_error() -> None:
    assert DatabaseUnavailable("down").retryable
    assert not InvalidInput("bad").retryable
