"""The cluster DNS the agent serves to its node's pods (node-local, from a watch cache)."""
