"""Listing containers through ``EngineClient.containers()`` (typed records, one request)
against the raw ``GET /containers/json`` it is built from (``client.api.containers(all=True)``)
and docker-py's high-level ``containers.list(all=True)`` (one inspect per container), on the
benchmark engine with its 1,000 containers. Also times how fast a blocked event reader stops
when its stream is closed from another thread.

Headline: records / raw, the cost of typing (target: at most 1.5x).

    python -m benchmarks.engine_list [--rounds R]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable

from benchmarks import common

NEEDS_ENGINE = True
TARGET_TYPING_OVERHEAD = 1.5


def best_of(rounds: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.engine_list")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    common.heading("engine list: typed records vs the raw list API vs docker-py's list()")

    import docker

    from toolbox.engine.connect import EngineConfig

    with common.bench_engine() as url:
        common.ensure_population(url)
        high = docker.DockerClient(base_url=url, version="auto", timeout=120)
        with EngineConfig.from_url(url).connect() as client:
            count = len(client.containers())
            raw = best_of(args.rounds, lambda: client.api.containers(all=True))
            records = best_of(args.rounds, client.containers)
            listed = best_of(1, lambda: high.containers.list(all=True))
            print(f"  {count} containers, best of {args.rounds}")
            print(f"  docker-py containers.list() (one inspect each): {listed * 1000:8.0f} ms")
            print(f"  high-level / records: {listed / records:.1f}x")

            closes = []
            for _ in range(20):
                stream = client.events()
                reader = threading.Thread(target=lambda s=stream: list(s))
                reader.start()
                time.sleep(0.05)  # let the reader block on the idle stream (spacing, not sync)
                started = time.perf_counter()
                stream.close()
                reader.join(5)
                closes.append(time.perf_counter() - started)
            print(
                f"  event stream close -> reader stopped: median "
                f"{statistics.median(closes) * 1000:.2f} ms, max {max(closes) * 1000:.2f} ms"
            )
        high.close()
    outcome = common.Outcome(
        benchmark="engine_list",
        metric=f"EngineClient.containers(), {count} typed records (best of {args.rounds})",
        value=records * 1000,
        unit="ms",
        baseline_name="raw GET /containers/json through docker-py's APIClient",
        baseline=raw * 1000,
        target=f"ratio <= {TARGET_TYPING_OVERHEAD}",
        passed=records / raw <= TARGET_TYPING_OVERHEAD,
    )
    outcome.report()
    return 0 if outcome.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
