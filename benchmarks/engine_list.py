"""Listing containers through ``EngineClient.containers()`` (typed records, one request)
against two baselines on the same private dockerd: the raw ``GET /containers/json``
(``client.api.containers(all=True)``, what the records are built from) and docker-py's
high-level ``containers.list(all=True)`` (one inspect per container). Also times how fast a
blocked event reader stops when its stream is closed from another thread.

Prints ratios: records/raw (the cost of typing, target at most 1.5) and
high-level/records (how much the one-request path saves).

    python -m benchmarks.engine_list [--count N] [--rounds R]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable

TARGET_TYPING_OVERHEAD = 1.5


def best_of(rounds: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="containers to create")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import docker

    from tests import harness
    from toolbox.engine.connect import EngineConfig

    daemon = harness.PrivateDockerd()
    daemon.start()
    try:
        high = docker.DockerClient(base_url=daemon.url, version="auto")
        harness.import_busybox(high)
        print(f"creating {args.count} containers ...", flush=True)
        for _ in range(args.count):
            high.api.create_container("busybox:latest", ["true"])
        with EngineConfig.from_url(daemon.url).connect() as client:
            assert len(client.containers()) == args.count
            raw = best_of(args.rounds, lambda: client.api.containers(all=True))
            records = best_of(args.rounds, client.containers)
            listed = best_of(max(1, args.rounds // 2), lambda: high.containers.list(all=True))
            print(f"raw GET /containers/json       {raw * 1000:8.1f} ms")
            print(f"EngineClient.containers()      {records * 1000:8.1f} ms")
            print(f"docker-py containers.list()    {listed * 1000:8.1f} ms")
            typing = records / raw
            print(f"records / raw:       {typing:.2f}x (target <= {TARGET_TYPING_OVERHEAD})")
            print(f"high-level / records: {listed / records:.1f}x")

            closes = []
            for _ in range(20):
                stream = client.events()
                reader = threading.Thread(target=lambda s=stream: list(s))
                reader.start()
                time.sleep(0.05)  # let the reader block on the idle stream
                started = time.perf_counter()
                stream.close()
                reader.join(5)
                closes.append(time.perf_counter() - started)
            median = statistics.median(closes) * 1000
            print(
                f"event stream close -> reader stopped: median {median:.2f} ms,"
                f" max {max(closes) * 1000:.2f} ms (contract: about 10 ms)"
            )
        high.close()
        return 0 if typing <= TARGET_TYPING_OVERHEAD else 1
    finally:
        daemon.cleanup()


if __name__ == "__main__":
    raise SystemExit(main())
