"""User / AllowRoot: a vigil-agent started as root becomes an unprivileged user, as zabbix_agentd does.

zabbix_agentd switches user first thing at start, before it creates its PID file, opens its log
and listens, so those belong to that user too; vigil-agent does the same. The user is `User`
(default `zabbix`); when User is not set and there is no `zabbix` account, vigil-agent uses
`nobody` (zabbix_agentd would refuse to start). AllowRoot=1 keeps root.
"""

from __future__ import annotations

import os
import pwd

DEFAULT_USER = "zabbix"
FALLBACK_USER = "nobody"


class PrivilegeError(Exception):
    """The agent cannot drop root; str() has zabbix_agentd's lines, one reason per line."""


def target_user(user: str) -> pwd.struct_passwd:
    """The account to run as for `User=user` ('' when unset)."""
    names = [user] if user else [DEFAULT_USER, FALLBACK_USER]
    for name in names:
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        if pw.pw_uid == 0:
            raise PrivilegeError(f"User={name} contradicts AllowRoot=0\ncannot run as root!")
        return pw
    raise PrivilegeError(f"user {' or '.join(names)} does not exist\ncannot run as root!")


def drop_privileges(user: str, allow_root: bool) -> str | None:
    """Become `user` when running as root unless allow_root; returns the user switched to, if any.

    Must run before any thread starts. Raises PrivilegeError.
    """
    if allow_root or os.getuid() != 0:
        return None
    pw = target_user(user)
    try:
        os.setgid(pw.pw_gid)
        os.initgroups(pw.pw_name, pw.pw_gid)
        os.setuid(pw.pw_uid)
    except OSError as e:
        raise PrivilegeError(f"cannot switch to user {pw.pw_name}: {e.strerror}") from None
    return pw.pw_name
