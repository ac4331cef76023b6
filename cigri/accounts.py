"""Unix accounts of this host, for the code that acts with a user's rights: the collector writing a
campaign's results as their owner (`cigri.daemons.result_files`) and the OAR emulator running a
login's jobs and `/media` requests as that user (`cigri.emulator.userfs`).

Reads the password and group databases; changes nothing. Below both users, so neither imports the
other (the emulator never imports the daemons).
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class UnixAccount:
    """A Unix user: its name, uid, primary gid, every group it is in, and its home."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str

    def popen_options(self) -> dict[str, Any]:
        """`subprocess` arguments that make a child run as this user."""
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}

    def environment(self) -> dict[str, str]:
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name,
                "PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def find_account(name: str) -> UnixAccount | None:
    """The Unix user named `name`, or None when there is none."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return UnixAccount(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid,
                       groups=tuple(os.getgrouplist(entry.pw_name, entry.pw_gid)),
                       home=entry.pw_dir)


def is_root() -> bool:
    return os.geteuid() == 0
