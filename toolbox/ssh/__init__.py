"""SSH to guests: app-generated keys and a paramiko client that trusts only the pinned host key."""
