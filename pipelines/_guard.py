"""One nightly at a time per work folder, and no flow run left RUNNING by a night that was killed.

A killed process (OOM killer, `kill -9`, a reboot) cannot report its own end: Prefect keeps its flow run RUNNING
forever. The night therefore holds a lock file in `[nightly] work_dir` with its process id, host and flow run id.
The next night finds the lock: if that process is still alive on this host, a second night would race the first on
the same registry, bundles and snapshot store, so it stops with a message naming the running one; if the process is
gone, its flow run is marked Crashed (with the reason) and the new night takes the lock.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

LOCK = "nightly.lock"


class NightRunning(ValueError):
    """Another nightly holds the work folder (a ValueError: the command line prints it as one line)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def mark_crashed(flow_run_id: str, message: str) -> bool:
    """Set a still-running flow run to Crashed; False when it had already finished (or is unknown)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Crashed

    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(UUID(flow_run_id))
        except (ObjectNotFound, ValueError):  # unknown here (another Prefect database) or not an id: nothing to mark
            return False
        if run.state is None or run.state.is_final():
            return False
        client.set_flow_run_state(flow_run_id, Crashed(message=message), force=True)
        return True


@contextmanager
def night_lock(work_dir: Path, flow_run_id: str | None, log: Callable[[str], None]) -> Iterator[None]:
    """Hold the work folder's nightly lock for the block (see the module docstring)."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / LOCK
    host = socket.gethostname()
    if path.is_file():
        try:
            held = json.loads(path.read_text())
        except (OSError, ValueError):
            held = {}
        pid, same_host = int(held.get("pid", -1)), held.get("host") == host
        if same_host and pid > 0 and pid != os.getpid() and _alive(pid):
            raise NightRunning(
                f"another nightly is running on {work_dir} (pid {pid}, flow run {held.get('flow_run_id')}, since "
                f"{held.get('started')}); wait for it, or stop it first"
            )
        stale = held.get("flow_run_id")
        if stale and (same_host or pid <= 0):
            reason = f"the nightly process (pid {pid} on {held.get('host')}) ended without finishing"
            if mark_crashed(stale, reason):
                log(f"previous nightly flow run {stale} was still RUNNING: {reason}; marked Crashed")
    started = datetime.now(UTC).isoformat(timespec="seconds")
    path.write_text(json.dumps({"pid": os.getpid(), "host": host, "flow_run_id": flow_run_id, "started": started}))
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
