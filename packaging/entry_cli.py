"""PyInstaller entry point of the ``toolbox`` command line (``toolbox.cli:main``)."""

import sys

from toolbox.cli import main

if __name__ == "__main__":
    sys.exit(main())
