"""Local accounts, passwords and API tokens: the embedded identity provider.

Passwords are hashed with argon2id; a password must be at least 12 characters, not made
of the account name, and not one of the most common passwords. An API token is
``hdh_<id>_<secret>`` with 256 bits of secret: only its SHA-256 is stored (a token has
enough entropy that a slow hash adds nothing), it is shown once, it expires, and it can
be revoked. Every change is audited in the same transaction.

The hub's other modules see a :class:`Principal` (who, with which roles) and never
these tables: an OIDC provider can later produce principals the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hdh import audit
from hdh.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from hdh.hub import Hub
from hdh.identity.models import ApiToken, User

ROLES = ("admin", "steward", "reviewer", "researcher", "auditor")
USER_NAME = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")
MIN_PASSWORD = 12
MAX_TOKEN_DAYS = 366
#: Passwords refused whatever their length (the commonest, and the hub's own words).
COMMON = frozenset(
    {
        "password", "password123", "123456789012", "qwertyuiopas", "azertyuiopqs",
        "motdepasse123", "iloveyou1234", "administrator", "changeme1234", "welcome12345",
        "healthdatahub", "letmein12345", "passw0rd1234",
    }
)  # fmt: skip

_hasher = PasswordHasher()
#: How stale a token's ``last_used_at`` may get before a request records it again.
LAST_USED_STEP = timedelta(minutes=1)


class AuthenticationFailed(PermissionDenied):
    """Wrong password, or an unknown, expired or revoked token. The message never says
    which, so that it tells an attacker nothing."""

    code = "authentication_failed"
    http_status = 401


class TooManyAttempts(PermissionDenied):
    """Sign-ins refused for a while after repeated failures (HTTP 429)."""

    http_status = 429
    code = "too_many_attempts"
    retryable = True

    def __init__(self, message: str, *, hint: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message, hint=hint)
        #: Seconds until a sign-in is let through again.
        self.retry_after = retry_after


@dataclass(frozen=True)
class Principal:
    """Who is acting, as every other module sees it."""

    name: str
    roles: frozenset[str]
    kind: str = "user"  # "user", or "operator" for the hub's operating-system account

    @property
    def actor(self) -> str:
        """How the audit log names this principal."""
        return self.name if self.kind == "operator" else f"user:{self.name}"

    def has(self, role: str) -> bool:
        return role in self.roles


def operator(actor: str) -> Principal:
    """The account that owns the hub folder and its key file: it can do everything the
    hub does anyway, so it acts as an administrator (audited under its own name)."""
    return Principal(actor, frozenset({"admin"}), kind="operator")


def principal_of(hub: Hub, actor: str) -> Principal:
    """The principal an audit actor names, as it stands now: ``user:NAME`` (refused when
    the account is disabled or gone) or an operator. For work done later on someone's
    behalf (a job runs as the user who submitted it)."""
    if not actor.startswith("user:"):
        return operator(actor)
    name = actor.removeprefix("user:")
    with hub.read() as session:
        user = session.scalar(select(User).where(User.name == name))
        if user is None or user.disabled:
            raise PermissionDenied(
                f"user {name!r} is disabled or gone", hint="an administrator can enable them"
            )
        return Principal(user.name, frozenset(user.roles))


class IdentityProvider(Protocol):
    """Turns credentials into a :class:`Principal` (local accounts today; OIDC later)."""

    def authenticate_password(self, name: str, password: str) -> Principal: ...

    def authenticate_token(self, token: str) -> Principal: ...


@dataclass(frozen=True)
class TokenCheck:
    """A token found good: who holds it and when it expires. Revoking it, or disabling
    or changing its holder, is a recorded change (``hdh.api.cache`` relies on that)."""

    principal: Principal
    expires_at: datetime


@dataclass
class UserInfo:
    name: str
    display_name: str
    email: str
    roles: list[str]
    disabled: bool
    created_at: str
    has_password: bool


@dataclass
class TokenInfo:
    id: str
    user: str
    label: str
    created_at: str
    expires_at: str
    revoked_at: str | None
    last_used_at: str | None


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(moment: datetime) -> str:
    return audit.utc_timestamp(moment)  # one format for every time the hub records


def check_password(name: str, password: str) -> None:
    """Refuse a weak password with the reason (nothing about it is stored or logged)."""
    problems = []
    if len(password) < MIN_PASSWORD:
        problems.append(f"it has {len(password)} characters, at least {MIN_PASSWORD} are needed")
    folded = password.casefold()
    if folded in COMMON or len(set(folded)) < 5:
        problems.append("it is a common password, or repeats too few characters")
    if name and name.casefold() in folded:
        problems.append("it contains the account name")
    if problems:
        raise InvalidInput(
            "the password is too weak: " + "; ".join(problems),
            hint="use a passphrase of several unrelated words, or a password manager",
        )


def _check_roles(roles: list[str]) -> list[str]:
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise InvalidInput(
            f"role {', '.join(unknown) or '(none)'} is not a hub role"
            if unknown
            else "a user needs at least one role",
            hint=f"give --role with one of {', '.join(ROLES)} (repeat for several)",
        )
    return sorted(set(roles), key=ROLES.index)


def _get_user(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFound(f"there is no user named {name!r}", hint="list them with hdh user list")
    return user


def _info(user: User) -> UserInfo:
    return UserInfo(
        user.name,
        user.display_name,
        user.email,
        list(user.roles),
        user.disabled,
        user.created_at,
        user.password_hash is not None,
    )


def add_user(
    hub: Hub,
    name: str,
    *,
    roles: list[str],
    actor: str,
    display_name: str = "",
    email: str = "",
    password: str | None = None,
) -> UserInfo:
    if not USER_NAME.match(name):
        raise InvalidInput(
            f"user name {name!r} is not allowed",
            hint="use 2 to 64 lower-case letters, digits, '.', '-' or '_', starting with a letter",
        )
    checked = _check_roles(roles)
    if email and not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", email):
        raise InvalidInput(f"{email!r} is not an e-mail address", hint="give name@domain")
    if password is not None:
        check_password(name, password)
    hashed = _hasher.hash(password) if password is not None else None
    with hub.transaction() as session:
        if session.scalar(select(User.id).where(User.name == name)) is not None:
            raise Conflict(f"there is already a user named {name!r}", hint="choose another name")
        user = User(
            name=name,
            display_name=display_name,
            email=email,
            roles=checked,
            password_hash=hashed,
            disabled=False,
            created_at=audit.utc_timestamp(),
        )
        session.add(user)
        audit.record(
            session,
            actor=actor,
            action="user.add",
            object_type="user",
            object_id=name,
            details={"roles": checked, "password": password is not None},
        )
        return _info(user)


def list_users(hub: Hub) -> list[UserInfo]:
    with hub.read() as session:
        return [_info(u) for u in session.scalars(select(User).order_by(User.name))]


def get_user(hub: Hub, name: str) -> UserInfo:
    with hub.read() as session:
        return _info(_get_user(session, name))


def disable_user(hub: Hub, name: str, *, actor: str) -> UserInfo:
    """Disable an account: its password and every token stop working at once."""
    with hub.transaction() as session:
        user = _get_user(session, name)
        if user.disabled:
            raise Conflict(f"user {name!r} is already disabled", hint="nothing to do")
        user.disabled = True
        user.disabled_at = audit.utc_timestamp()
        audit.record(
            session, actor=actor, action="user.disable", object_type="user", object_id=name
        )
        return _info(user)


def enable_user(hub: Hub, name: str, *, actor: str) -> UserInfo:
    """Enable a disabled account again (its old tokens stay revoked only if revoked)."""
    with hub.transaction() as session:
        user = _get_user(session, name)
        if not user.disabled:
            raise Conflict(f"user {name!r} is not disabled", hint="nothing to do")
        user.disabled = False
        user.disabled_at = None
        audit.record(session, actor=actor, action="user.enable", object_type="user", object_id=name)
        return _info(user)


def set_roles(hub: Hub, name: str, roles: list[str], *, actor: str) -> UserInfo:
    """Replace a user's hub roles."""
    checked = _check_roles(roles)
    with hub.transaction() as session:
        user = _get_user(session, name)
        before = list(user.roles)
        user.roles = checked
        audit.record(
            session,
            actor=actor,
            action="user.roles",
            object_type="user",
            object_id=name,
            details={"from": before, "to": checked},
        )
        return _info(user)


def set_password(hub: Hub, name: str, password: str, *, actor: str) -> None:
    check_password(name, password)
    hashed = _hasher.hash(password)
    with hub.transaction() as session:
        _get_user(session, name).password_hash = hashed
        audit.record(
            session, actor=actor, action="user.password", object_type="user", object_id=name
        )


def create_token(
    hub: Hub, name: str, *, actor: str, days: int = 30, label: str = ""
) -> tuple[str, TokenInfo]:
    """A new token for user ``name``: the token itself (shown once) and its record."""
    if not 1 <= days <= MAX_TOKEN_DAYS:
        raise InvalidInput(
            f"a token lasts 1 to {MAX_TOKEN_DAYS} days, not {days}",
            hint="give --days between 1 and 366",
        )
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    now = _now()
    with hub.transaction() as session:
        user = _get_user(session, name)
        if user.disabled:
            raise Conflict(f"user {name!r} is disabled", hint="a disabled user gets no token")
        row = ApiToken(
            id=token_id,
            user_id=user.id,
            label=label,
            secret_sha256=hashlib.sha256(secret.encode()).hexdigest(),
            created_at=_stamp(now),
            expires_at=_stamp(now + timedelta(days=days)),
        )
        session.add(row)
        audit.record(
            session,
            actor=actor,
            action="token.create",
            object_type="token",
            object_id=token_id,
            details={"user": name, "days": days},
        )
        return f"hdh_{token_id}_{secret}", _token_info(row, name)


def _token_info(row: ApiToken, user: str) -> TokenInfo:
    return TokenInfo(
        row.id, user, row.label, row.created_at, row.expires_at, row.revoked_at, row.last_used_at
    )


def list_tokens(hub: Hub, name: str | None = None) -> list[TokenInfo]:
    with hub.read() as session:
        query = select(ApiToken, User.name).join(User, User.id == ApiToken.user_id)
        if name is not None:
            _get_user(session, name)
            query = query.where(User.name == name)
        rows = session.execute(query.order_by(ApiToken.created_at)).all()
        return [_token_info(t, u) for t, u in rows]


def revoke_token(hub: Hub, token_id: str, *, actor: str) -> TokenInfo:
    with hub.transaction() as session:
        found = session.execute(
            select(ApiToken, User.name)
            .join(User, User.id == ApiToken.user_id)
            .where(ApiToken.id == token_id)
        ).first()
        if found is None:
            raise NotFound(f"there is no token {token_id!r}", hint="list them with hdh token list")
        row, user = found
        if row.revoked_at is not None:
            raise Conflict(f"token {token_id!r} is already revoked", hint="nothing to do")
        row.revoked_at = audit.utc_timestamp()
        audit.record(
            session,
            actor=actor,
            action="token.revoke",
            object_type="token",
            object_id=token_id,
            details={"user": user},
        )
        return _token_info(row, user)


class LocalIdentity:
    """The embedded provider: this hub's accounts and tokens."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def authenticate_password(self, name: str, password: str) -> Principal:
        with self.hub.read() as session:
            user = session.scalar(select(User).where(User.name == name))
            stored = user.password_hash if user is not None else None
            roles = frozenset(user.roles) if user is not None else frozenset()
            disabled = user is None or user.disabled
        try:
            # Verify even for an unknown user, so that timing does not tell them apart.
            _hasher.verify(stored or _dummy_hash(), password)
            if stored is None or disabled:
                raise VerificationError
        except (VerificationError, InvalidHashError):
            self._failure("password", name[:64])
            raise _failed() from None
        return Principal(name, roles)

    def _failure(self, how: str, who: str) -> None:
        """Record a failed sign-in (the name or token id tried, never the secret)."""
        with self.hub.transaction() as session:
            audit.record(
                session,
                actor="anonymous",
                action="auth.failed",
                object_type="user" if how == "password" else "token",
                object_id=who,
                outcome="failure",
                details={"with": how},
            )

    def authenticate_token(self, token: str) -> Principal:
        return self.check_token(token).principal

    def check_token(self, token: str) -> TokenCheck:
        """Who holds ``token``, and until when it is good (unless revoked before)."""
        match = re.fullmatch(r"hdh_([0-9a-f]{12})_([A-Za-z0-9_-]{43})", token.strip())
        if match is None:
            self._failure("token", "malformed")
            raise _failed()
        token_id, secret = match.groups()
        digest = hashlib.sha256(secret.encode()).hexdigest()
        now = _now()
        with self.hub.read() as session:  # a read: most requests write nothing
            found = session.execute(
                select(ApiToken, User)
                .join(User, User.id == ApiToken.user_id)
                .where(ApiToken.id == token_id)
            ).first()
            usable = found is not None and (
                hmac.compare_digest(found[0].secret_sha256, digest)
                and found[0].revoked_at is None
                and datetime.fromisoformat(found[0].expires_at) > now
                and not found[1].disabled
            )
            if found is None or not usable:
                checked, last = None, None
            else:
                checked = TokenCheck(
                    Principal(found[1].name, frozenset(found[1].roles)),
                    datetime.fromisoformat(found[0].expires_at),
                )
                last = found[0].last_used_at
        if checked is None:
            self._failure("token", token_id)
            raise _failed()
        # To the minute: a busy client does not write on every request.
        if last is None or now - datetime.fromisoformat(last) > LAST_USED_STEP:
            with self.hub.transaction() as session:
                session.execute(
                    update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=_stamp(now))
                )
        return checked


def _failed() -> AuthenticationFailed:
    return AuthenticationFailed(
        "authentication failed: the name and password, or the token, are wrong, expired, "
        "revoked, or belong to a disabled account",
        hint="sign in again, or ask an administrator for a new token",
    )


@cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))
