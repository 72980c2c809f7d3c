"""The Redis implementations of the shared-state ports (every process shares them), and the
arq queue."""
