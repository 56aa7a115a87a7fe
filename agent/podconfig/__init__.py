"""What a container is configured with: its environment and its volumes."""
