"""The in-process implementations of the shared-state ports (the embedded default: one
process, no servers)."""
