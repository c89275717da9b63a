"""``app_launch_stopped``: see ``benchmarks/app_launch.py`` (one QEMU machine for both)."""

from benchmarks.app_launch import main

if __name__ == "__main__":
    raise SystemExit(main(["--only", "stopped"]))
