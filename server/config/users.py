"""Users, user groups, host-group rights, sign-in lockout and API tokens: all their SQL (SQLAlchemy Core).

Passwords are stored as werkzeug-style salted hashes (scrypt); API tokens as the SHA-256 of a
256-bit random secret, which is shown once when created and never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from vigil.server.config import reads
from vigil.server.config import tables as t
from vigil.server.config.model import ConfigError
from vigil.server.config.tables import Permission, Role

ROLE_NAMES = {"user": Role.USER, "admin": Role.ADMIN, "super admin": Role.SUPER_ADMIN, "guest": Role.GUEST}
ROLE_LABELS = {v: k for k, v in ROLE_NAMES.items()}
USERNAME = re.compile(r"[0-9A-Za-z_.@\- ]{1,100}")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
# The message for every failed sign-in, as Zabbix's: it does not tell which part was wrong.
SIGN_IN_FAILED = "Incorrect user name or password or account is temporarily blocked."


class AuthError(Exception):
    """A sign-in that failed; str() is safe to show."""


def hash_password(password: str) -> str:
    from werkzeug.security import generate_password_hash

    return generate_password_hash(password, method="scrypt")


def check_password(stored: str, password: str) -> bool:
    from werkzeug.security import check_password_hash

    if not stored:
        return False
    try:
        return check_password_hash(stored, password)
    except ValueError:  # an unknown hash format: nobody can sign in with it
        return False


_DUMMY_HASH: list[str] = []


def validate_password(password: str, field_name: str = "password") -> None:
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"{field_name}: must be at least {MIN_PASSWORD} characters long")
    if len(password) > MAX_PASSWORD:
        raise ConfigError(f"{field_name}: longer than {MAX_PASSWORD} characters")


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class User:
    userid: int
    username: str
    name: str
    surname: str
    role: Role
    # A short digest of the password hash: a session made before the password changed no longer matches.
    passwd_tag: str = field(default="", repr=False)

    @property
    def is_super_admin(self) -> bool:
        return self.role == Role.SUPER_ADMIN

    @property
    def can_configure(self) -> bool:
        """Admins and super admins change configuration (on host groups they have read-write rights to)."""
        return self.role in (Role.ADMIN, Role.SUPER_ADMIN)

    @property
    def can_act(self) -> bool:
        """Everyone but a guest may act on what they see (acknowledge problems, own tokens, own password)."""
        return self.role != Role.GUEST

    @property
    def role_label(self) -> str:
        return ROLE_LABELS[self.role]


@dataclass(frozen=True, slots=True)
class Access:
    """What a user may do with host groups: everything (super admin), or per group a Permission."""

    everything: bool
    groups: Mapping[int, int]  # host groupid -> Permission; a group not listed: no access

    def group(self, groupid: int) -> int:
        if self.everything:
            return Permission.READ_WRITE
        return self.groups.get(groupid, Permission.DENY)

    def host(self, groupids: Iterable[int]) -> int:
        """A host's permission: denied if any of its groups is, else the highest of its groups'."""
        if self.everything:
            return Permission.READ_WRITE
        perms = [self.groups.get(g) for g in groupids]
        if any(p == Permission.DENY for p in perms):
            return Permission.DENY
        return max((p for p in perms if p is not None), default=Permission.DENY)

    @property
    def readable(self) -> set[int] | None:
        """Host groups readable; None: all."""
        return None if self.everything else {g for g, p in self.groups.items() if p >= Permission.READ}

    @property
    def denied(self) -> set[int]:
        return set() if self.everything else {g for g, p in self.groups.items() if p == Permission.DENY}

    @property
    def writable(self) -> set[int] | None:
        return None if self.everything else {g for g, p in self.groups.items() if p == Permission.READ_WRITE}


@dataclass(frozen=True, slots=True)
class TokenInfo:
    tokenid: int
    name: str
    userid: int
    username: str
    status: int
    expires_at: int
    created_at: int
    lastaccess: int


def _user(r: sa.Row) -> User:
    return User(int(r.userid), r.username, r.name, r.surname, Role(r.roleid),
                hashlib.sha256(r.passwd.encode()).hexdigest()[:16])


class UserRepo:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- users ------------------------------------------------------------------------------------

    def count(self) -> int:
        with self.engine.connect() as c:
            return int(c.execute(sa.select(sa.func.count()).select_from(t.users)).scalar() or 0)

    def create_user(self, username: str, password: str, role: Role = Role.USER, *, name: str = "",
                    groups: Iterable[str] = ()) -> int:
        username = username.strip()
        if not USERNAME.fullmatch(username):
            raise ConfigError("username: 1 to 100 letters, digits, spaces or . _ @ -")
        validate_password(password)
        with self.engine.begin() as c:
            if c.execute(sa.select(t.users.c.userid).where(t.users.c.username == username)).first():
                raise ConfigError(f"username: a user named {username!r} exists already")
            uid = int(c.execute(sa.insert(t.users).values(
                username=username, name=name[:100], passwd=hash_password(password), roleid=int(role),
            ).returning(t.users.c.userid)).scalar_one())
            for g in groups:
                c.execute(sa.insert(t.users_groups).values(userid=uid, usrgrpid=self._group_id(c, g, create=True)))
        return uid

    def set_password(self, userid: int, password: str) -> None:
        validate_password(password, "new_password")
        with self.engine.begin() as c:
            c.execute(sa.update(t.users).where(t.users.c.userid == userid).values(
                passwd=hash_password(password), attempt_failed=0))

    def set_role(self, userid: int, role: Role) -> None:
        with self.engine.begin() as c:
            c.execute(sa.update(t.users).where(t.users.c.userid == userid).values(roleid=int(role)))

    def unlock(self, userid: int) -> bool:
        """Forget a user's failed sign-ins, ending a lockout; False if there is no such user."""
        with self.engine.begin() as c:
            return c.execute(sa.update(t.users).where(t.users.c.userid == userid)
                             .values(attempt_failed=0, attempt_clock=0)).rowcount > 0

    def delete_user(self, userid: int) -> bool:
        with self.engine.begin() as c:
            return c.execute(sa.delete(t.users).where(t.users.c.userid == userid)).rowcount > 0

    def user(self, userid: int) -> User | None:
        with reads.connect(self.engine) as c:
            r = c.execute(sa.select(t.users).where(t.users.c.userid == userid)).first()
            return _user(r) if r else None

    def by_name(self, username: str) -> User | None:
        with self.engine.connect() as c:
            r = c.execute(sa.select(t.users).where(t.users.c.username == username)).first()
            return _user(r) if r else None

    def authenticate(self, username: str, password: str, now: int, max_attempts: int, block: int) -> User:
        """The user if the password is right and the account is not blocked; else AuthError.

        As Zabbix: `max_attempts` failures in a row block the account for `block` seconds, during
        which even the right password is refused; each failure restarts the block.
        """
        with self.engine.begin() as c:
            r = c.execute(sa.select(t.users).where(t.users.c.username == username)).first()
            if r is None:
                if not _DUMMY_HASH:
                    _DUMMY_HASH.append(hash_password(secrets.token_hex(8)))
                check_password(_DUMMY_HASH[0], password)  # the same work: no timing tells a user exists
                ok = False
            else:
                blocked = r.attempt_failed >= max_attempts and now - r.attempt_clock < block
                ok = not blocked and check_password(r.passwd, password)
                if not ok and not blocked:
                    # committed with this block, not rolled back with the refusal
                    c.execute(sa.update(t.users).where(t.users.c.userid == r.userid).values(
                        attempt_failed=t.users.c.attempt_failed + 1, attempt_clock=now))
                elif ok and r.attempt_failed:
                    c.execute(sa.update(t.users).where(t.users.c.userid == r.userid).values(attempt_failed=0))
        if not ok or r is None:
            raise AuthError(SIGN_IN_FAILED)
        return _user(r)

    def users(self) -> list[User]:
        with self.engine.connect() as c:
            return [_user(r) for r in c.execute(sa.select(t.users).order_by(t.users.c.username))]

    # --- groups and rights --------------------------------------------------------------------------

    def memberships(self) -> dict[int, list[str]]:
        """userid -> names of the user groups the user is in."""
        with self.engine.connect() as c:
            out: dict[int, list[str]] = {}
            for uid, name in c.execute(sa.select(t.users_groups.c.userid, t.usrgrp.c.name)
                                       .join(t.usrgrp, t.usrgrp.c.usrgrpid == t.users_groups.c.usrgrpid)
                                       .order_by(t.usrgrp.c.name)):
                out.setdefault(int(uid), []).append(name)
            return out

    def groups(self) -> list[tuple[int, str, dict[int, int]]]:
        """Every user group: (usrgrpid, name, {host groupid: Permission})."""
        with self.engine.connect() as c:
            rights: dict[int, dict[int, int]] = {}
            for r in c.execute(sa.select(t.rights)):
                rights.setdefault(int(r.groupid), {})[int(r.id)] = int(r.permission)
            return [(int(g), n, rights.get(int(g), {})) for g, n in
                    c.execute(sa.select(t.usrgrp.c.usrgrpid, t.usrgrp.c.name).order_by(t.usrgrp.c.name))]

    def set_rights_by_id(self, usrgrpid: int, rights: Mapping[int, int]) -> None:
        """Exactly these rights for the user group: host groupid -> Permission."""
        for hg, perm in rights.items():
            if perm not in tuple(Permission):
                raise ConfigError(f"rights[{hg}]: {perm!r} is not 0 (deny), 2 (read) or 3 (read-write)")
        with self.engine.begin() as c:
            c.execute(sa.delete(t.rights).where(t.rights.c.groupid == usrgrpid))
            for hg, perm in rights.items():
                c.execute(sa.insert(t.rights).values(groupid=usrgrpid, id=hg, permission=int(perm)))

    def _group_id(self, c: Connection, name: str, *, create: bool = False) -> int:
        gid = c.execute(sa.select(t.usrgrp.c.usrgrpid).where(t.usrgrp.c.name == name)).scalar()
        if gid is None:
            if not create:
                raise ConfigError(f"user_group: no user group named {name!r}")
            gid = c.execute(sa.insert(t.usrgrp).values(name=name).returning(t.usrgrp.c.usrgrpid)).scalar_one()
        return int(gid)

    def add_to_group(self, userid: int, group: str) -> int:
        with self.engine.begin() as c:
            gid = self._group_id(c, group, create=True)
            if not c.execute(sa.select(t.users_groups).where(t.users_groups.c.userid == userid,
                                                              t.users_groups.c.usrgrpid == gid)).first():
                c.execute(sa.insert(t.users_groups).values(userid=userid, usrgrpid=gid))
        return gid

    def set_rights(self, group: str, rights: Mapping[str, int]) -> None:
        """Exactly these rights for the user group: host group name -> Permission."""
        with self.engine.begin() as c:
            gid = self._group_id(c, group, create=True)
            c.execute(sa.delete(t.rights).where(t.rights.c.groupid == gid))
            for hg, perm in rights.items():
                if perm not in tuple(Permission):
                    raise ConfigError(f"rights[{hg!r}]: {perm!r} is not 0 (deny), 2 (read) or 3 (read-write)")
                hgid = c.execute(sa.select(t.host_groups.c.groupid).where(t.host_groups.c.name == hg)).scalar()
                if hgid is None:
                    raise ConfigError(f"rights: no host group named {hg!r}")
                c.execute(sa.insert(t.rights).values(groupid=gid, id=hgid, permission=int(perm)))

    def access(self, user: User) -> Access:
        if user.is_super_admin:
            return Access(True, {})
        with reads.connect(self.engine) as c:
            rows = c.execute(
                sa.select(t.rights.c.id, t.rights.c.permission)
                .join(t.users_groups, t.users_groups.c.usrgrpid == t.rights.c.groupid)
                .where(t.users_groups.c.userid == user.userid)).all()
        out: dict[int, int] = {}
        for hgid, perm in rows:
            if perm == Permission.DENY or out.get(hgid) == Permission.DENY:
                out[hgid] = Permission.DENY
            else:
                out[hgid] = max(out.get(hgid, 0), int(perm))
        if user.role == Role.GUEST:  # a guest reads at most
            out = {g: min(p, Permission.READ) for g, p in out.items()}
        return Access(False, out)

    # --- API tokens -----------------------------------------------------------------------------------

    def create_token(self, userid: int, name: str, now: int, expires_at: int = 0,
                     creator: int | None = None) -> tuple[int, str]:
        """A new token: (tokenid, the secret). The secret is not stored and cannot be shown again."""
        name = name.strip()
        if not name or len(name) > 64:
            raise ConfigError("name: 1 to 64 characters")
        if expires_at and expires_at <= now:
            raise ConfigError("expires_at: must be in the future")
        secret = secrets.token_hex(32)
        with self.engine.begin() as c:
            if c.execute(sa.select(t.tokens.c.tokenid).where(t.tokens.c.userid == userid,
                                                             t.tokens.c.name == name)).first():
                raise ConfigError(f"name: this user has a token named {name!r} already")
            tid = c.execute(sa.insert(t.tokens).values(
                name=name, userid=userid, token=token_hash(secret), created_at=now, expires_at=expires_at,
                creator_userid=creator).returning(t.tokens.c.tokenid)).scalar_one()
        return int(tid), secret

    def token_user(self, secret: str, now: int) -> User | None:
        """The user of an active, unexpired token (and its last use is noted); None otherwise."""
        if not re.fullmatch(r"[0-9a-f]{64}", secret):
            return None
        digest = token_hash(secret)
        with self.engine.begin() as c:
            r = c.execute(sa.select(t.tokens.c.tokenid, t.tokens.c.token, t.tokens.c.status, t.tokens.c.expires_at,
                                    t.tokens.c.lastaccess, t.users)
                          .join(t.users, t.users.c.userid == t.tokens.c.userid)
                          .where(t.tokens.c.token == digest)).first()
            if r is None or not hmac.compare_digest(r.token, digest) or r.status != 0:
                return None
            if r.expires_at and r.expires_at <= now:
                return None
            if now - r.lastaccess >= 10:  # not a write per request
                c.execute(sa.update(t.tokens).where(t.tokens.c.tokenid == r.tokenid).values(lastaccess=now))
            return _user(r)

    def tokens(self, userid: int | None = None) -> list[TokenInfo]:
        q = (sa.select(t.tokens, t.users.c.username).join(t.users, t.users.c.userid == t.tokens.c.userid)
             .order_by(t.tokens.c.tokenid))
        if userid is not None:
            q = q.where(t.tokens.c.userid == userid)
        with self.engine.connect() as c:
            return [TokenInfo(r.tokenid, r.name, r.userid, r.username, r.status, r.expires_at, r.created_at,
                              r.lastaccess) for r in c.execute(q)]

    def revoke_token(self, tokenid: int, userid: int | None = None) -> bool:
        """Revoke a token (of `userid` only, when given); False if there is none such."""
        q = sa.update(t.tokens).where(t.tokens.c.tokenid == tokenid).values(status=1)
        if userid is not None:
            q = q.where(t.tokens.c.userid == userid)
        with self.engine.begin() as c:
            return c.execute(q).rowcount > 0
