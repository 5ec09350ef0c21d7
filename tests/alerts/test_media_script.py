"""Alert scripts run as real processes: arguments like Zabbix's, no shell, exit codes, time-outs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from vigil.alerts.media import Context, MediaError, Message, send
from vigil.server.config.tables import MediaKind
from vigil.server.store.alertlog import MediaType

from tests.alerts.conftest import script
from tests.conftest import wait_until

MSG = Message(alertid=321, sendto="+15550100", subject="Problem: disk $(touch pwned) `id`",
              message="line one\nline two ✓; rm -rf /", clock=0)


def media(path: str, **params: Any) -> MediaType:
    base: dict[str, Any] = {"script": path, "timeout": 5}
    base.update(params)
    return MediaType(mediatypeid=3, name="SMS", kind=MediaKind.SCRIPT, enabled=True, params=base)


def recorder(tmp_path: Path) -> Path:
    out = tmp_path / "args"
    return script(tmp_path / "record.sh",
                  f'for a in "$@"; do printf "%s\\0" "$a"; done > {out}\necho "$VIGIL_ALERT_ID" > {out}.id\n')


def recorded(tmp_path: Path) -> list[str]:
    return (tmp_path / "args").read_text().split("\0")[:-1]


def test_default_parameters_are_sendto_subject_message_without_a_shell(tmp_path: Path) -> None:
    s = recorder(tmp_path)
    send(media(str(s)), MSG, Context(tmp_path))
    assert recorded(tmp_path) == [MSG.sendto, MSG.subject, MSG.message]
    assert (tmp_path / "args.id").read_text().strip() == "321"
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_an_empty_parameter_list_means_the_defaults(tmp_path: Path) -> None:
    send(media(str(recorder(tmp_path)), parameters=[]), MSG)  # what `vigil config import` fills in
    assert recorded(tmp_path) == [MSG.sendto, MSG.subject, MSG.message]


def test_parameters_with_alert_macros(tmp_path: Path) -> None:
    s = recorder(tmp_path)
    send(media(str(s), parameters=["--to={ALERT.SENDTO}", "-s", "{ALERT.SUBJECT}", "{ALERT.ID}", "fixed"]), MSG)
    assert recorded(tmp_path) == [f"--to={MSG.sendto}", "-s", MSG.subject, "321", "fixed"]


def test_a_name_is_found_in_the_alert_scripts_directory(tmp_path: Path) -> None:
    recorder(tmp_path)
    send(media("record.sh"), MSG, Context(tmp_path))
    assert recorded(tmp_path)[0] == MSG.sendto
    with pytest.raises(MediaError, match="must be a file name in the alert scripts directory") as e:
        send(media("../record.sh"), MSG, Context(tmp_path))
    assert e.value.permanent


def test_exit_code_other_than_zero_fails_with_stderr(tmp_path: Path) -> None:
    s = script(tmp_path / "fail.sh", 'echo "gateway said: quota exceeded" >&2\nexit 3\n')
    with pytest.raises(MediaError, match=r"^media type 'SMS': script 'fail.sh' exited with 3: gateway said: quota "
                                         r"exceeded$") as e:
        send(media(str(s)), MSG)
    assert not e.value.permanent


def test_a_script_past_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    s = script(tmp_path / "hang.sh", f"sleep 60 &\necho $$ $! > {pidfile}\nwait\n")
    with pytest.raises(MediaError, match=r"script 'hang.sh' did not finish within 1 s and was killed"):
        send(media(str(s), timeout=1), MSG)
    pids = [int(p) for p in pidfile.read_text().split()]

    def gone() -> bool:
        for pid in pids:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            # a zombie is gone for our purposes
            if Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z":
                return False
        return True

    wait_until(gone, 5, "the script and its child to be killed")


def test_missing_and_not_executable(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=r"media type 'SMS': script '.*nope.sh' does not exist"):
        send(media(str(tmp_path / "nope.sh")), MSG)
    p = tmp_path / "plain.sh"
    p.write_text("#!/bin/sh\nexit 0\n")
    p.chmod(0o644)
    with pytest.raises(MediaError, match="is not executable"):
        send(media(str(p)), MSG)


def test_bad_parameter_list(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="'parameters': expected a list of texts") as e:
        send(media(str(recorder(tmp_path)), parameters="{ALERT.SENDTO}"), MSG)
    assert e.value.permanent


def test_unknown_media_kind() -> None:
    m = MediaType(mediatypeid=9, name="Odd", kind=2, enabled=True, params={})
    with pytest.raises(MediaError, match=r"media type 'Odd': unknown type 2 \(expected 0 email, 1 script or 4 "
                                         r"webhook\)"):
        send(m, MSG)
