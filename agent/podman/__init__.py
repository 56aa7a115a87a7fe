"""The agent's container runtime layer: its own Podman service and an async libpod client."""
