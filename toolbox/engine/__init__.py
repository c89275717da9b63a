"""The Docker engine layer: typed records, parsers, connection settings, a client over
docker-py's low-level API, and a watcher that keeps a live view of an engine.

Modules: ``records`` (frozen dataclasses), ``parse`` (form/CLI parsers), ``connect``
(``EngineConfig``), ``client`` (``EngineClient``), ``watch`` (``EngineWatcher``).
"""
