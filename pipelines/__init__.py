"""Ray Data pipelines: thin wrappers that map batches through the pure core in `reasonguard`."""
