"""aztp-agents."""
