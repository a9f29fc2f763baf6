from __future__ import annotations

from prefect.client.orchestration import get_client

from pipelines.deploy import EVALUATE_DEPLOYMENT, NIGHTLY_DEPLOYMENT, build_deployments
from recsys.config import load_settings


def test_nightly_deployment_is_scheduled_by_cron_in_the_configured_time_zone():
    settings = load_settings(nightly={"timezone": "Europe/Paris"})
    nightly, evaluate = build_deployments(
        settings, config_path="recsys.toml", cron=settings.nightly.cron, timezone=settings.nightly.timezone
    )
    assert (nightly.name, evaluate.name) == (NIGHTLY_DEPLOYMENT, EVALUATE_DEPLOYMENT)
    assert nightly.parameters == {"config_path": "recsys.toml"}
    schedule = nightly.schedules[0].schedule
    assert (schedule.cron, schedule.timezone) == ("0 2 * * *", "Europe/Paris")
    assert not evaluate.schedules  # on demand only

    # registered with the (test) Prefect server, the schedule survives the round trip
    deployment_id = nightly.apply()
    with get_client(sync_client=True) as client:
        stored = client.read_deployment(deployment_id)
    assert stored.name == NIGHTLY_DEPLOYMENT
    assert stored.schedules[0].schedule.cron == "0 2 * * *"
    assert stored.schedules[0].schedule.timezone == "Europe/Paris"
    assert stored.concurrency_limit == 1 or stored.global_concurrency_limit is not None
