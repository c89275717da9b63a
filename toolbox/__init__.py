"""Toolbox core: machines, drivers, guest images, provisioning and the engine client.

Nothing in this package imports Qt; the GUI in ``ui/`` and the ``toolbox`` CLI use it alike.
"""

__version__ = "0.1.0"
