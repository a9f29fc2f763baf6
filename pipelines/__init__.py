"""Prefect flows that wire library calls together: `nightly` (train, evaluate, register, gate, publish) and
`evaluate` (offline evaluation of registered versions). Deployments: `pipelines.deploy`."""
