"""Table models shared by the pages (see ``ui.models.table``)."""
