"""reasonguard core."""
