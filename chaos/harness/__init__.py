"""The chaos harness: network-namespace hosts, fault injectors, an observer and a runner.

Python API (root needed), the same objects `chaos/run`, `chaos/cluster` and
`chaos/fault` use:

    from harness import Cluster, Faults
    cluster = Cluster.create(nodes=5)          # namespaces, bridge, certs, agents
    faults = Faults(cluster)
    faults.partition(["n1", "n2"], ["n3", "n4", "n5"])
    faults.heal()
    faults.kill(["n3"]); faults.restart(["n3"])
    cluster.destroy()                          # agents, namespaces, bridge, nft table
"""

from .cluster import Cluster
from .faults import Faults
from .util import HarnessError

__all__ = ["Cluster", "Faults", "HarnessError"]
