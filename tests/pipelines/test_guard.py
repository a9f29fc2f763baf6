"""One nightly at a time per work folder; a killed night's flow run is marked Crashed by the next one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.states import Running

from pipelines._guard import LOCK, NightRunning, night_lock


@flow(name="nightly-stand-in")
def _stand_in() -> None:
    return None


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_nights_flow_run_is_marked_crashed(tmp_path):
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(_stand_in, state=Running())
        assert client.read_flow_run(run.id).state.is_running()
    (tmp_path / LOCK).write_text(
        json.dumps({"pid": _dead_pid(), "host": os.uname().nodename, "flow_run_id": str(run.id), "started": "x"})
    )
    said: list[str] = []
    with night_lock(tmp_path, "new-run", said.append):
        held = json.loads((tmp_path / LOCK).read_text())
        assert held["pid"] == os.getpid() and held["flow_run_id"] == "new-run"
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run.id).state
    assert state.is_crashed() and "ended without finishing" in state.message
    assert said and str(run.id) in said[0] and "marked Crashed" in said[0]
    assert not (tmp_path / LOCK).exists()  # released


def test_a_second_night_on_the_same_folder_is_refused_while_the_first_runs(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK).write_text(
            json.dumps({"pid": sleeper.pid, "host": os.uname().nodename, "flow_run_id": None, "started": "t0"})
        )
        with pytest.raises(NightRunning, match=f"pid {sleeper.pid}"), night_lock(tmp_path, None, print):
            pass
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == sleeper.pid  # the running night keeps its lock
    finally:
        sleeper.kill()
        sleeper.wait()
    with night_lock(tmp_path, None, print):  # once it is gone, the folder is free again
        pass


def test_every_nights_end_is_journaled_and_a_crash_is_listed(tmp_path):
    """Completed and failed nights are journaled; a killed one shows as crashed, first as found by `recent_nights`
    (its lock remains, its process is gone), then in the journal once the next night has taken the folder."""
    from pipelines._guard import recent_nights

    with night_lock(tmp_path, "run-1", print):
        assert recent_nights(tmp_path)[-1]["state"] == "Running"
    with pytest.raises(RuntimeError), night_lock(tmp_path, "run-2", print):
        raise RuntimeError("embedding failed")
    (tmp_path / LOCK).write_text(
        json.dumps({"pid": _dead_pid(), "host": os.uname().nodename, "flow_run_id": "run-3", "started": "t3"})
    )
    states = [(n["flow_run_id"], n["state"]) for n in recent_nights(tmp_path)]
    assert states == [("run-1", "Completed"), ("run-2", "Failed"), ("run-3", "Crashed (found now)")]
    assert "embedding failed" in str(recent_nights(tmp_path)[1]["reason"])
    with night_lock(tmp_path, "run-4", print):
        pass
    nights = recent_nights(tmp_path)
    assert [(n["flow_run_id"], n["state"]) for n in nights[-2:]] == [("run-3", "Crashed"), ("run-4", "Completed")]
    assert "ended without finishing" in str(nights[-2]["reason"])
