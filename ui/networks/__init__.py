"""The Networks page: networks with create, remove and which containers are attached."""
