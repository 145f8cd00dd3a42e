"""Episode datasets: the on-disk format, collection from simulators, and importers."""
