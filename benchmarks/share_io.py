"""``share_io``: see ``benchmarks/vm_io.py``, which boots one QEMU machine for it
(``vm_io`` runs all three benchmarks on one machine)."""

from benchmarks.vm_io import main

if __name__ == "__main__":
    raise SystemExit(main(["--only", "share"]))
