"""Where the partitioned steps run: in this process (`local`) or on a Dask cluster (`dask`).

A step that splits into independent partitions (new item texts to embed, by shards; every user's list, by user
partitions) maps a picklable function over the partitions through an `Engine`; the local engine calls it in order,
the Dask engine submits the calls to a `distributed` cluster (an existing scheduler's `address`, or a LocalCluster
it starts) and gathers the results in the same order. The function reads its fitted inputs from files (an encoder's
folders, a saved ranking model), so what travels is paths and a partition, and the results are the same whichever
engine ran them (embeddings up to float rounding). Within one process, independent user batches run side by side in
threads (`map_batches`, `[scale] batch_threads`).
"""

from recsys.compute.engine import ComputeConfig, Engine, LocalEngine, open_engine, partitions
from recsys.compute.scale import ScaleConfig
from recsys.compute.threads import map_batches, resolve_threads

__all__ = [
    "ComputeConfig",
    "Engine",
    "LocalEngine",
    "ScaleConfig",
    "map_batches",
    "open_engine",
    "partitions",
    "resolve_threads",
]
