"""Run the benchmarks and print a summary table: ``python -m benchmarks [names]``
(``./dev bench [names]``).

With no names, every benchmark except the slow ones (``machine_start`` boots VMs for minutes)
runs. Each benchmark runs as its own process (``python -m benchmarks.<name>``), so Qt and memory
state never leak from one into the next; they share one engine holding the 1,000 containers and
300 images, started here once (or ``TOOLBOX_BENCH_DOCKER_HOST``). Exit status: 0 when every
target was met, 1 when one was missed or a benchmark failed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from benchmarks import common

# The five first, then the engine and table micro-benchmarks.
DEFAULT = (
    "list_refresh",
    "cli_to_row",
    "ui_first_paint",
    "app_memory",
    "ui_logs",
    "engine_list",
    "ui_table",
    "app_idle",
)
SLOW = (
    "machine_start",
    "app_launch",
    "app_launch_running",
    "app_launch_stopped",
    "port_forward_latency",
    "port_forward_throughput",
    "share_io",
    "vm_io",
)


def needs_engine(name: str) -> bool:
    module = importlib.import_module(f"benchmarks.{name}")
    return bool(getattr(module, "NEEDS_ENGINE", False))


def run_one(name: str, env: dict[str, str]) -> tuple[int, float]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{name}"], env=env, cwd=common.ROOT)
    return proc.returncode, time.monotonic() - started


def summary(names: list[str], codes: dict[str, tuple[int, float]], results: Path) -> int:
    outcomes = {o.benchmark: o for o in common.read_outcomes(results)}
    rows = [("benchmark", "measured", "baseline", "ratio", "target", "result", "took")]
    failed = False
    for name in names:
        code, took = codes.get(name, (None, 0.0))
        outcome = outcomes.get(name)
        if outcome is None:
            verdict = "not run" if code is None else "PASS" if code == 0 else f"FAILED ({code})"
            failed |= code != 0
            rows.append((name, "-", "-", "-", "see its output", verdict, f"{took:.0f} s"))
            continue
        failed |= outcome.passed is False or code not in (0, 1)
        rows.append(
            (
                name,
                common.fmt(outcome.value, outcome.unit),
                common.fmt(outcome.baseline, outcome.unit),
                f"{outcome.ratio:.3g}x",
                outcome.target,
                outcome.verdict if code in (0, 1) else f"{outcome.verdict}, exit {code}",
                f"{took:.0f} s",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print()
    common.heading("summary")
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print(("  " + "  ".join(cells)).rstrip())
    print()
    for name in names:
        outcome = outcomes.get(name)
        if outcome is not None:
            print(f"  {name}: {outcome.metric}; baseline: {outcome.baseline_name}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"default: {' '.join(DEFAULT)}")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    known = DEFAULT + SLOW
    if args.list:
        print("default:", " ".join(DEFAULT))
        print("only when named:", " ".join(SLOW))
        return 0
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(known)}")
    names = list(dict.fromkeys(args.names)) or list(DEFAULT)

    results = Path(tempfile.mkdtemp(prefix="tbx-bench-")) / "results.jsonl"
    env = dict(os.environ, **{common.RESULT_ENV: str(results)})
    codes: dict[str, tuple[int, float]] = {}
    with ExitStack() as stack:
        if any(needs_engine(n) for n in names) and not os.environ.get(common.ENGINE_ENV):
            common.heading("the benchmark engine")
            url = stack.enter_context(common.bench_engine())
            common.ensure_population(url)
            env[common.ENGINE_ENV] = url
        for name in names:
            print(flush=True)
            codes[name] = run_one(name, env)
    code = summary(names, codes, results)
    results.unlink(missing_ok=True)
    results.parent.rmdir()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
