"""Who a job and a `/media` request act as, and the `/media` file operations done with that
user's rights.

The emulator's trust model (docs/emulator.md, "Trust model"): started by an ordinary user, every
login is a name for that user, and jobs and `/media` have that user's rights, no more. Started
as root, a login is the Unix user of that name (`run_as="login"`): each job runs as that user
(its uid, gid and groups) and each `/media` operation is done by a short child process running as
that user, so the kernel decides what the login may read or delete, exactly like oardodo on a
real OAR server; a login with no Unix user is refused. Only an explicit `allow_root_jobs` keeps
everything running as root (`run_as="self"`). The Unix users themselves are
`cigri.accounts.UnixAccount`, shared with the collector.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

from cigri.accounts import UnixAccount
from cigri.emulator.jobs import ApiError

# Run by `sh -c` as the target user (nothing of cigri or of this Python needs to be readable by
# them): exit status 0 done, 2 not found, 3 not allowed. `find -printf` lists a directory as NUL
# separated fields: name, type following links, own type, link target, size, mtime, mode bits.
_CHILD = {
    "read": '[ -f "$1" ] || exit 2; [ -r "$1" ] || exit 3; exec cat -- "$1"',
    "list": '[ -d "$1" ] || exit 2; [ -r "$1" ] && [ -x "$1" ] || exit 3; '
            'exec find "$1" -mindepth 1 -maxdepth 1 -printf "%f\\0%Y\\0%y\\0%l\\0%s\\0%T@\\0%m\\0"',
    "delete": '[ -e "$1" ] || [ -L "$1" ] || exit 2; [ -w "$(dirname -- "$1")" ] || exit 3; '
              'rm -rf -- "$1" 2>/dev/null || exit 3',
}
_TYPE_BITS = {"d": 0o040000, "l": 0o120000}


def _parse_listing(data: bytes) -> list[list[Any]]:
    fields = data.decode("utf-8", errors="surrogateescape").split("\0")[:-1]
    rows = []
    for i in range(0, len(fields) - 6, 7):
        name, followed, own, link, size, mtime, mode = fields[i : i + 7]
        rows.append([name, followed == "d", link if own == "l" else None, int(size),
                     int(float(mtime)), _TYPE_BITS.get(own, 0o100000) | int(mode, 8)])
    return sorted(rows)


class MediaError(ApiError):
    """A `/media` failure, answered as OAR does (`{code, title, message}`)."""


def _as_user(user: UnixAccount, op: str, path: str) -> bytes:
    try:
        done = subprocess.run(["sh", "-c", _CHILD[op], "sh", path],
                              capture_output=True, timeout=60, check=False, cwd="/",
                              env=user.environment(), **user.popen_options())
    except (OSError, subprocess.SubprocessError) as failure:
        raise MediaError(500, "Oar server error", f"oardodo failed: {failure}") from failure
    if done.returncode == 2:
        raise MediaError(404, "Not found", f"{'Path' if op == 'list' else 'File'} not found: {path}")
    if done.returncode == 3:
        what = "File could not be read" if op == "read" else (
            "Path could not be listed" if op == "list" else "File or directory is not writeable")
        raise MediaError(403, "Forbidden", f"{what}: {path}")
    if done.returncode != 0:
        raise MediaError(500, "Oar server error",
                         f"oardodo failed: {done.stderr.decode(errors='replace')[-300:]}")
    return done.stdout


def read_file(path: str, user: UnixAccount | None) -> bytes:
    """The bytes of `path`, read with `user`'s rights (None: the emulator's own)."""
    if user is not None:
        return _as_user(user, "read", path)
    if not os.path.isfile(path):
        raise MediaError(404, "Not found", f"File not found: {path}")
    if not os.access(path, os.R_OK):
        raise MediaError(403, "Forbidden", f"File could not be read: {path}")
    with open(path, "rb") as f:
        return f.read()


def list_dir(path: str, user: UnixAccount | None) -> list[dict[str, Any]]:
    """OAR's `/media/ls` items of directory `path`, listed with `user`'s rights."""
    if user is not None:
        rows = _parse_listing(_as_user(user, "list", path))
    else:
        if not os.path.isdir(path):
            raise MediaError(404, "Not found", f"Path not found: {path}")
        rows = []
        for name in sorted(os.listdir(path)):
            full = os.path.join(path, name)
            info = os.lstat(full)
            link = os.readlink(full) if os.path.islink(full) else None
            rows.append([name, os.path.isdir(full), link, info.st_size, int(info.st_mtime),
                         info.st_mode])
    items = []
    for name, is_dir, link, size, mtime, mode in rows:
        kind = "d" if is_dir else ("l " + link if link is not None else "f")
        items.append({"name": name, "type": kind, "size": None if kind == "d" else str(size),
                      "mtime": mtime, "mode": mode})
    return items


def delete(path: str, user: UnixAccount | None) -> None:
    """Remove `path` (a directory with its contents) with `user`'s rights."""
    if user is not None:
        _as_user(user, "delete", path)
        return
    if not os.path.lexists(path):
        raise MediaError(404, "Not found", f"File not found: {path}")
    if not os.access(os.path.dirname(path.rstrip("/")) or "/", os.W_OK):
        raise MediaError(403, "Forbidden", f"File or directory is not writeable: {path}")
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)
