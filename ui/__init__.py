"""Toolbox desktop app (PySide6). Runs the core in ``toolbox/`` off the GUI thread."""
