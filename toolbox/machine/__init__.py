"""Machines: the record (``model``), its store (``store``) and the lifecycle (``service``)."""
