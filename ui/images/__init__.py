"""The Images page: the engine's images with pull, push, tag, remove, prune and run."""
