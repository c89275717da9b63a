"""The Machines page: list, actions, and the guided create."""
