"""One worker node of tests/ray_cluster.py's cluster: `python tests/ray_node.py GCS_ADDRESS TEMP_DIR CPUS` joins the
head at GCS_ADDRESS on 127.0.0.1, prints its node id and holds the node up until it is killed, as
`ray start --address HEAD --block` does on a cloud machine.

Not that command: Ray's CLI turns a worker's 127.0.0.1 (its --node-ip-address and the head's address) into the
machine's network address, where the head does not listen, and refuses to start a worker at all with
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, the switch that keeps 127.0.0.1 for the head and its drivers. So the node is
started by Ray's own node launcher, with the options `ray start` would pass and an explicit 127.0.0.1, as
ray.cluster_utils (orchestrator.loopback) and Ray's fake multi-node provider start theirs.
"""

from __future__ import annotations

import sys
import time

from ray._private.node import Node
from ray._private.parameter import RayParams

OBJECT_STORE_BYTES = 80 * 2**20  # Ray's default is 30% of RAM per node, and trials pass no objects


def main(gcs_address: str, temp_dir: str, cpus: str) -> None:
    params = RayParams(
        gcs_address=gcs_address,
        node_ip_address="127.0.0.1",
        num_cpus=int(cpus),
        num_gpus=0,
        object_store_memory=OBJECT_STORE_BYTES,
        temp_dir=temp_dir,
        min_worker_port=0,  # any free ports: other nodes and other test runs share the machine
        max_worker_port=0,
        node_manager_port=0,
        include_log_monitor=False,  # the head's monitors the machine's one session folder
    )
    params.dashboard_agent_listen_port = None  # a free port, not the head's agent's
    node = Node(params, head=False, shutdown_at_exit=True, spawn_reaper=False)
    print(node.node_id, flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main(*sys.argv[1:])
