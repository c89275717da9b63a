"""PyInstaller entry point of the Toolbox desktop app (``ui.app:main``)."""

import sys

from ui.app import main

if __name__ == "__main__":
    sys.exit(main())
