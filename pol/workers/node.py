"""Entry point of one process of a federated job: rank 0 coordinates, ranks 1..N are workers.

    torchrun --nproc-per-node 5 -m pol.workers.node --config job.json
    # or: pol workers train --workers 4 ...   (spawns the same processes locally)
"""

from __future__ import annotations

import argparse
import os
import sys

from pol.errors import PolError, short_reason


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pol.workers.node", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="node config JSON (pol.workers.config.NodeConfig)")
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "-1"))
    try:
        import torch

        from pol.envinfo import pick_device
        from pol.workers.config import NodeConfig

        config = NodeConfig.load(args.config)
        torch.set_num_threads(config.threads)
        device = pick_device(config.device)
        from pol.workers.transport import connect

        net = connect(timeout_s=config.idle_timeout_s)
        if net.rank == 0:
            from pol.workers.coordinator import serve as coordinate

            coordinate(net, config, device)
        else:
            from pol.workers.worker import serve as work

            work(net, config, device)
        return 0
    except (PolError, KeyError) as exc:
        if os.environ.get("POL_DEBUG") == "1":
            raise
        print(f"pol workers node (rank {rank}): error: {short_reason(exc)}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no process-group teardown: it would wait on a hung or dead peer
