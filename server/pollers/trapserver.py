"""The SNMP trap receiver of `vigil server`: VIGIL_SNMPTRAP_* settings to a running TrapReceiver
(snmptraps.py) whose traps go to the scheduler (Scheduler.trap: snmptrap[regexp] and
snmptrap.fallback items of the host whose SNMP interface sent them).

VIGIL_SNMPTRAP_USERS lists SNMPv3 users as snmptrapd's `createUser` lines do, separated by `;`:

    -e 0x8000000001020304 monitor SHA-256 "auth pass" AES "priv pass"; -e 0x80000000aa traps MD5 authpass

`-e` is the sending device's engine ID (required); then the security name, and optionally the
authentication protocol and passphrase, then the privacy protocol and passphrase. The security level
follows from what is given (noAuthNoPriv, authNoPriv, authPriv).
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable

from vigil.server.pollers.snmp import AuthProtocol, PrivProtocol, SecurityLevel, SnmpConfigError
from vigil.server.pollers.snmptraps import Trap, TrapReceiver, TrapUser
from vigil.server.settings import Settings

log = logging.getLogger("vigil.server.pollers.snmptraps")

AUTH_NAMES = {"MD5": AuthProtocol.MD5, "SHA": AuthProtocol.SHA1, "SHA1": AuthProtocol.SHA1,
              "SHA-224": AuthProtocol.SHA224, "SHA224": AuthProtocol.SHA224, "SHA-256": AuthProtocol.SHA256,
              "SHA256": AuthProtocol.SHA256, "SHA-384": AuthProtocol.SHA384, "SHA384": AuthProtocol.SHA384,
              "SHA-512": AuthProtocol.SHA512, "SHA512": AuthProtocol.SHA512}
PRIV_NAMES = {"DES": PrivProtocol.DES, "AES": PrivProtocol.AES128, "AES128": PrivProtocol.AES128,
              "AES-128": PrivProtocol.AES128, "AES192": PrivProtocol.AES192, "AES-192": PrivProtocol.AES192,
              "AES256": PrivProtocol.AES256, "AES-256": PrivProtocol.AES256}


def parse_users(text: str) -> list[TrapUser]:
    """VIGIL_SNMPTRAP_USERS to TrapUsers; raises ValueError naming the entry that is wrong."""
    users = []
    for n, entry in enumerate(e for e in text.split(";") if e.strip()):
        where = f"VIGIL_SNMPTRAP_USERS entry {n + 1}"
        try:
            words = shlex.split(entry)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        if len(words) < 3 or words[0] != "-e":
            raise ValueError(f"{where}: expected `-e ENGINEID NAME [AUTH AUTHPASS [PRIV PRIVPASS]]`, "
                             f"got {entry.strip()!r}")
        engine, name, rest = words[1], words[2], words[3:]
        if len(rest) not in (0, 2, 4):
            raise ValueError(f"{where} ({name}): a protocol needs its passphrase")
        auth, priv = AuthProtocol.SHA1, PrivProtocol.AES128
        level = SecurityLevel.NO_AUTH_NO_PRIV
        authpass = privpass = ""
        if rest:
            if rest[0].upper() not in AUTH_NAMES:
                raise ValueError(f"{where} ({name}): authentication protocol {rest[0]!r} is not one of "
                                 f"{', '.join(AUTH_NAMES)}")
            auth, authpass, level = AUTH_NAMES[rest[0].upper()], rest[1], SecurityLevel.AUTH_NO_PRIV
        if len(rest) == 4:
            if rest[2].upper() not in PRIV_NAMES:
                raise ValueError(f"{where} ({name}): privacy protocol {rest[2]!r} is not one of "
                                 f"{', '.join(PRIV_NAMES)}")
            priv, privpass, level = PRIV_NAMES[rest[2].upper()], rest[3], SecurityLevel.AUTH_PRIV
        for what, phrase in (("authentication", authpass), ("privacy", privpass)):
            if phrase and len(phrase) < 8:
                raise ValueError(f"{where} ({name}): the {what} passphrase must be at least 8 characters")
        user = TrapUser(name, engine, level, auth, authpass, priv, privpass)
        try:
            user.engine_id_bytes()
        except SnmpConfigError as e:
            raise ValueError(f"{where}: {e}") from None
        users.append(user)
    return users


async def start(settings: Settings, on_trap: Callable[[Trap], object]) -> TrapReceiver | None:
    """Start receiving traps when VIGIL_SNMPTRAP_LISTEN is set; None when it is empty. Raises ValueError
    (bad users) or OSError (the port is taken) with the setting named."""
    if settings.snmptrap_listen is None:
        return None
    host, port = settings.snmptrap_listen
    users = parse_users(settings.snmptrap_users)
    receiver = TrapReceiver(on_trap, host=host, port=port, communities=settings.snmptrap_communities, users=users)
    try:
        await receiver.start()
    except OSError as e:
        raise OSError(e.errno, f"{e.strerror} (VIGIL_SNMPTRAP_LISTEN)") from None
    return receiver
