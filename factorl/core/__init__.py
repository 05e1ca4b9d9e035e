"""The bottom floor: typed configuration sections and the agent protocol (state, batch)."""
