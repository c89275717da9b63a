"""The Containers page: table, actions, details (logs, inspect), run dialog, shells."""
