"""Errors that the hub raises, and what a user or a program should do about them.

Every error the hub raises on purpose is a :class:`HubError`. Each subclass fixes
three properties that callers decide on mechanically:

* ``exit_code`` — what the ``hdh`` command exits with (stable: scripts rely on it);
* ``http_status`` — what the REST API answers;
* ``retryable`` — whether trying the same operation again later may succeed
  (the migration engine and the API clients read this, never the message).

The message of a user-facing error says what is wrong *and* what to do, on one line.

::

    HubError                      exit 1   HTTP 500
    ├── ConfigError               exit 3   HTTP 500   hub.toml or HDH_* settings are wrong
    ├── NotFound                  exit 4   HTTP 404
    │   └── HubNotFound                               no hub in the folder
    ├── Conflict                  exit 5   HTTP 409
    │   └── FolderNotEmpty                            hdh init into a folder that holds other files
    ├── InvalidInput              exit 6   HTTP 422   a bad value in a command or request
    ├── DatabaseUnavailable       exit 7   HTTP 503   retryable
    ├── IntegrityError            exit 8   HTTP 500
    │   └── AuditChainBroken                          hdh audit verify found tampering
    └── PermissionDenied          exit 9   HTTP 403

Exit code 2 is the command-line parser's (unknown option, missing argument) and
70 is an internal error: a bug, reported with the path of the log that holds its traceback.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "EXIT_INTERNAL",
    "AuditChainBroken",
    "ConfigError",
    "Conflict",
    "DatabaseUnavailable",
    "FolderNotEmpty",
    "HubError",
    "HubNotFound",
    "IntegrityError",
    "InvalidInput",
    "NotFound",
    "PermissionDenied",
]

EXIT_INTERNAL = 70


class HubError(Exception):
    """Base of every error the hub raises on purpose.

    ``message`` is what went wrong; ``hint`` is what to do about it. ``str()`` joins
    them into the one line the CLI prints after ``Error:``.
    """

    exit_code: ClassVar[int] = 1
    http_status: ClassVar[int] = 500
    code: ClassVar[str] = "hub_error"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}: {self.hint}"
        return self.message

    def to_dict(self) -> dict[str, object]:
        """The JSON shape every API error uses."""
        return {
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
            "retryable": self.retryable,
        }


class ConfigError(HubError):
    exit_code = 3
    code = "config_error"


class NotFound(HubError):
    exit_code = 4
    http_status = 404
    code = "not_found"


class HubNotFound(NotFound):
    code = "hub_not_found"


class Conflict(HubError):
    exit_code = 5
    http_status = 409
    code = "conflict"


class FolderNotEmpty(Conflict):
    code = "folder_not_empty"


class InvalidInput(HubError):
    exit_code = 6
    http_status = 422
    code = "invalid_input"


class DatabaseUnavailable(HubError):
    exit_code = 7
    http_status = 503
    code = "database_unavailable"
    retryable = True


class IntegrityError(HubError):
    exit_code = 8
    code = "integrity_error"


class AuditChainBroken(IntegrityError):
    code = "audit_chain_broken"


class PermissionDenied(HubError):
    exit_code = 9
    http_status = 403
    code = "permission_denied"
