"""Throwaway Unix accounts and a directory they can traverse, for the tests of who owns collected
results (the collector runs as root in CI). Accounts are made with `useradd` (no home, no login
shell, a random `cgt…` name) and removed with `userdel` after the test."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

MakeUser = Callable[[], pwd.struct_passwd]


@pytest.fixture
def unix_user() -> Iterator[MakeUser]:
    """Make throwaway Unix accounts; removed after the test."""
    if os.geteuid() != 0:
        pytest.fail("these tests create Unix accounts: run them as root (CI does)")
    made: list[str] = []

    def make() -> pwd.struct_passwd:
        name = f"cgt{secrets.token_hex(4)}"
        subprocess.run(["useradd", "-M", "-U", "-s", "/usr/sbin/nologin", name], check=True,
                       capture_output=True)
        made.append(name)
        return pwd.getpwnam(name)

    try:
        yield make
    finally:
        for name in made:
            subprocess.run(["userdel", name], check=False, capture_output=True)


@pytest.fixture
def root() -> Iterator[Path]:
    """A directory other accounts can traverse (pytest's own is 0700), like /var/lib/cigri."""
    directory = Path(tempfile.mkdtemp(prefix="cigri-privacy-"))
    directory.chmod(0o711)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def readable_by(account: pwd.struct_passwd, path: Path) -> bool:
    """Whether the account can read the file (a real `cat` running as it)."""
    done = subprocess.run(["cat", str(path)], user=account.pw_uid, group=account.pw_gid,
                          extra_groups=[], capture_output=True, check=False, cwd="/")
    return done.returncode == 0
