"""CrewAI adapter."""
