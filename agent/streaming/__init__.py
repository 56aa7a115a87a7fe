"""The agent's streaming endpoint: container logs, exec, attach and port-forward for the API
server (see docs/AGENT.md, "Streaming")."""
