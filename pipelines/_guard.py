"""One nightly at a time per work folder, and no flow run left RUNNING by a night that was killed.

A killed process (OOM killer, `kill -9`, a reboot) cannot report its own end: Prefect keeps its flow run RUNNING
forever. The night therefore holds a lock file in `[nightly] work_dir` with its process id, host and flow run id.
The next night finds the lock: if that process is still alive on this host, a second night would race the first on
the same registry, bundles and snapshot store, so it stops with a message naming the running one; if the process is
gone, its flow run is marked Crashed (with the reason) and the new night takes the lock. The check and the write
happen under an advisory file lock (`flock`), so two nights starting at once cannot both take the folder.

Every night's end is appended to `nights.jsonl` in the same folder (Completed, Failed with the error, or Crashed as
found by the next night): `recsys registry list` shows the recent ones beside the registered versions, with a night
whose process is gone but whose lock remains as "Crashed (found now)".
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

LOCK = "nightly.lock"
JOURNAL = "nights.jsonl"


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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _record(work_dir: Path, entry: Mapping[str, object]) -> None:
    with (Path(work_dir) / JOURNAL).open("a") as f:
        f.write(json.dumps(entry) + "\n")


def _read_lock(path: Path) -> dict[str, object]:
    try:
        held = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return held if isinstance(held, dict) else {}


@contextmanager
def night_lock(work_dir: Path, flow_run_id: str | None, log: Callable[[str], None]) -> Iterator[None]:
    """Hold the work folder's nightly lock for the block (see the module docstring)."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / LOCK
    host = socket.gethostname()
    started = _now()
    with (work_dir / f".{LOCK}.guard").open("a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # released when the file closes: checking and taking the lock are one step
        if path.is_file():
            held = _read_lock(path)
            pid, same_host = int(str(held.get("pid", -1))), held.get("host") == host
            if same_host and pid > 0 and pid != os.getpid() and _alive(pid):
                raise NightRunning(
                    f"another nightly is running on {work_dir} (pid {pid}, flow run {held.get('flow_run_id')}, since "
                    f"{held.get('started')}); wait for it, or stop it first"
                )
            stale = held.get("flow_run_id")
            if same_host or pid <= 0:
                why = f"the nightly process (pid {pid} on {held.get('host')}) ended without finishing"
                _record(work_dir, {**held, "state": "Crashed", "reason": why, "noticed": started})
                if stale and mark_crashed(str(stale), why):
                    log(f"previous nightly flow run {stale} was still RUNNING: {why}; marked Crashed")
        path.write_text(json.dumps({"pid": os.getpid(), "host": host, "flow_run_id": flow_run_id, "started": started}))
    state: str = "Completed"
    reason: str | None = None
    try:
        yield
    except BaseException as exc:
        state, reason = "Failed", f"{type(exc).__name__}: {exc}"[:500]
        raise
    finally:
        _record(
            work_dir,
            {"flow_run_id": flow_run_id, "pid": os.getpid(), "host": host, "started": started, "ended": _now()}
            | {"state": state, "reason": reason},
        )
        path.unlink(missing_ok=True)


def recent_nights(work_dir: Path, n: int = 10) -> list[dict[str, object]]:
    """The last `n` nights of `work_dir` (newest last), from its journal, plus the one holding the lock now: Running
    when its process lives, Crashed (found now) when it is gone."""
    work_dir = Path(work_dir)
    out: list[dict[str, object]] = []
    journal = work_dir / JOURNAL
    if journal.is_file():
        for line in journal.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:  # a line cut by a crash while writing: skipped
                continue
    held = _read_lock(work_dir / LOCK) if (work_dir / LOCK).is_file() else {}
    if held:
        pid = int(str(held.get("pid", -1)))
        alive = held.get("host") == socket.gethostname() and pid > 0 and _alive(pid)
        out.append({**held, "state": "Running" if alive else "Crashed (found now)"})
    return out[-n:]
