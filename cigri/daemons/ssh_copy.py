"""The collector's copies over ssh (`output_gathering_method` `scp` or `rsync`): the command line
run as the owner's cluster login on the cluster's `ssh_host`, run with a timeout, and the private
files and directories a copy lands in before it is moved into place.

Does not own what a copy's outcome means for the file's row, nor writing as the owner
(`cigri.daemons.collector`, `cigri.daemons.result_files`).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Final

SSH_TIMEOUT_SECONDS: Final = 600.0


def copy_command(method: str, *, login: str, host: str, remote_path: str, target: Path,
                 ssh_options: str) -> list[str]:
    """The argv copying `remote_path` (relative to the login's home when it starts with `~/`)
    from `login@host` into `target`, with the site's COLLECTOR_SSH_OPTIONS."""
    remote = remote_path[2:] if remote_path.startswith("~/") else remote_path
    source = f"{login}@{host}:{remote}"
    options = shlex.split(ssh_options)
    if method == "rsync":
        return ["rsync", "-q", "-e", shlex.join(["ssh", *options]), source, str(target)]
    return ["scp", "-q", *options, source, str(target)]


def run_copy(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a copy; a command that cannot start or times out is a failed copy (exit status 255,
    like ssh's own connection failures), never an exception."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False,
                              timeout=SSH_TIMEOUT_SECONDS)
    except (OSError, subprocess.TimeoutExpired) as failure:
        return subprocess.CompletedProcess(argv, 255, "", str(failure))


def partial_beside(local: Path) -> Path:
    """`<local>.part`, its missing directories created private (0700)."""
    for directory in reversed([local.parent, *local.parent.parents]):
        if not directory.exists():
            directory.mkdir(mode=0o700)
    return local.with_name(local.name + ".part")


def staging_file(collector_directory: str) -> Path:
    """A new private file in `<COLLECTOR_DIRECTORY>/.staging`, for a copy that is then written
    as the results' owner."""
    staging = Path(collector_directory) / ".staging"
    staging.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=staging, suffix=".part")
    os.close(handle)
    return Path(name)
