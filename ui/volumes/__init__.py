"""The Volumes page: volumes with create, remove and which containers use each."""
