"""Where the partitioned steps run: in this process (`local`) or on a Dask cluster (`dask`).

A step that splits into independent partitions (today: building every user's list, by user partitions) maps a
picklable function over the partitions through an `Engine`; the local engine calls it in order, the Dask engine
submits the calls to a `distributed` cluster (an existing scheduler's `address`, or a LocalCluster it starts) and
gathers the results in the same order. The function reads its inputs from files (a saved ranking model), so what
travels is a path and a partition, and the results are the same whichever engine ran them.
"""

from recsys.compute.engine import ComputeConfig, Engine, LocalEngine, open_engine
from recsys.compute.scale import ScaleConfig

__all__ = ["ComputeConfig", "Engine", "LocalEngine", "ScaleConfig", "open_engine"]
