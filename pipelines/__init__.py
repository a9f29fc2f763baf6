"""Prefect flows that wire library calls together. Filled by the flows stage."""
