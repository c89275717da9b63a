"""Reusable widgets: the engine banner, the error dialog and the debounced filter box."""
