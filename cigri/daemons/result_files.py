"""The collector's local side: where a campaign's results may go, who owns them, and how they are
written so that only the campaign's owner can read them and no campaign writes over another's.

Owns:
- **ownership**: a campaign's result directory is mode 0700 and its files 0600. When the collector
  runs as root and the campaign owner has a Unix account of the same name, the directory is the
  account's and every file in it is written by a forked child running with the account's uid and
  gid (`write_as`): the kernel checks the owner's rights, and a symlink the owner plants there
  cannot make root write anywhere else. Otherwise the results belong to the collector's own user
  (cigri), with no access for anyone else.
- **user destinations** (COLLECTOR_ALLOW_USER_DESTINATION): `check_destination` accepts an
  `output_destination` only when the collector can write with the owner's rights (it runs as root,
  the owner has an account), the path resolved (symlinks and `..`) lies in a directory the owner
  owns and outside COLLECTOR_DIRECTORY, and neither it nor a parent holds another campaign's
  results. A campaign marks the top of its results with `.cigri-campaign` (its id).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Final

from cigri.accounts import UnixAccount, find_account, is_root

MARKER: Final = ".cigri-campaign"


class Refused(Exception):
    """A result file or directory the collector must not write (the message says why)."""


def account_of(grid_user: str) -> UnixAccount | None:
    """The owner's Unix account when the collector can act as it (it runs as root), else None.
    root itself is never a campaign owner's account."""
    if not is_root():
        return None
    account = find_account(grid_user)
    return None if account is None or account.uid == 0 else account


def default_directory(collector_directory: str, campaign_id: int) -> Path:
    return Path(collector_directory) / str(campaign_id)


def check_destination(destination: str, *, campaign_id: int, grid_user: str,
                      collector_directory: str) -> Path:
    """The resolved user destination, or `Refused` saying why."""
    raw = destination.replace("{CAMPAIGN_ID}", str(campaign_id))
    if not is_root():
        raise Refused(f"output_destination {raw} refused: the collector does not run as root, "
                      f"so it cannot write with {grid_user}'s rights")
    account = account_of(grid_user)
    if account is None:
        raise Refused(f"output_destination {raw} refused: {grid_user} has no Unix account on the "
                      "collector's host")
    resolved = Path(os.path.realpath(raw))
    place = resolved
    while not place.exists():
        place = place.parent
    status = place.stat()
    if not place.is_dir() or status.st_uid != account.uid:
        raise Refused(f"output_destination {raw} refused: it resolves to {resolved}, not inside "
                      f"a directory {grid_user} owns")
    results = Path(os.path.realpath(collector_directory))
    if resolved == results or results in resolved.parents:
        raise Refused(f"output_destination {raw} refused: {resolved} is inside the collector's "
                      "own results directory")
    for directory in (resolved, *resolved.parents):
        owner = _marker(directory)
        if owner is not None and owner != str(campaign_id):
            raise Refused(f"output_destination {raw} refused: {directory} holds the results of "
                          f"campaign {owner}")
    return resolved


def _marker(directory: Path) -> str | None:
    try:
        return (directory / MARKER).read_bytes()[:64].decode(errors="replace").strip()
    except OSError:
        return None


def prepare_default(directory: Path, account: UnixAccount | None) -> None:
    """Create `<COLLECTOR_DIRECTORY>/<id>` 0700, owned by the account when there is one; an
    existing one is made private too. COLLECTOR_DIRECTORY is 0711 when created here, and made
    0711 when results belong to accounts (they must reach their directory, and list no other)."""
    if not directory.parent.exists():
        directory.parent.mkdir(parents=True, mode=0o711, exist_ok=True)
        os.chmod(directory.parent, 0o711)
    elif account is not None and directory.parent.stat().st_mode & 0o777 != 0o711:
        os.chmod(directory.parent, 0o711)
    if directory.is_symlink():
        raise Refused(f"{directory} is a symbolic link")
    directory.mkdir(mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700, follow_symlinks=False)
    if account is not None:
        os.chown(directory, account.uid, account.gid, follow_symlinks=False)


def write_as(account: UnixAccount, path: Path, *, campaign_id: int, top: Path, size: int,
             source: bytes | IO[bytes]) -> None:
    """Write `source` (bytes, or a file opened by the caller) to `path` with the account's
    rights: a forked child drops to the account's uid and gid (no supplementary group) and
    writes `.part`, then renames; directories 0700, files 0600, size checked. `Refused` when
    the child could not (no right, another campaign's results there)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no logging, no database, only this write
        code = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(account.gid)
            os.setuid(account.uid)
            os.umask(0o077)
            _write_claimed(path, campaign_id=str(campaign_id), top=top, size=size,
                           source=source)
        except BaseException as error:  # reported to the parent, which raises Refused
            os.write(write_end, str(error).encode(errors="replace")[:2000])
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        problem = pipe.read().decode(errors="replace").strip()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise Refused(f"could not write {path} as {account.name}: "
                      f"{problem or f'wait status {status}'}")


def _claimed_by(directory: Path) -> str | None:
    try:
        with (directory / MARKER).open("rb") as handle:
            return handle.read(64).decode(errors="replace").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _write_claimed(path: Path, *, campaign_id: str, top: Path, size: int,
                   source: bytes | IO[bytes]) -> None:
    """In the child, as the owner: claim `top` for the campaign (`.cigri-campaign`), refuse a
    directory another campaign claimed, write `.part` without following a symlink, rename."""
    top.mkdir(mode=0o700, parents=True, exist_ok=True)
    owner = _claimed_by(top)
    if owner is None:
        try:
            fd = os.open(top / MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                         0o600)
        except FileExistsError:
            pass
        else:
            os.write(fd, campaign_id.encode())
            os.close(fd)
    elif owner != campaign_id:
        raise Refused(f"{top} holds the results of campaign {owner}")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    owner = _claimed_by(path.parent)
    if owner not in (None, campaign_id):
        raise Refused(f"{path.parent} holds the results of campaign {owner}")
    partial = path.with_name(path.name + ".part")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        if isinstance(source, bytes):
            out.write(source)
        else:
            while chunk := source.read(1 << 20):
                out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    if partial.stat().st_size != size:
        partial.unlink()
        raise Refused(f"short write of {path}")
    partial.replace(path)


def write_own(path: Path, data: bytes) -> int:
    """Write as the collector's own user (a directory only it can enter): `.part` then rename,
    no symlink followed, directories 0700, file 0600; the size on disk is checked."""
    for directory in reversed([path.parent, *path.parent.parents]):
        if not directory.exists():
            directory.mkdir(mode=0o700)
    partial = path.with_name(path.name + ".part")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    if partial.stat().st_size != len(data):
        partial.unlink()
        raise OSError(f"short write of {path}")
    os.chmod(partial, 0o600)
    partial.replace(path)
    return len(data)
