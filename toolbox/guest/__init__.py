"""Guest images: download, verify, cache and build them; the cloud-init seed ISO."""
