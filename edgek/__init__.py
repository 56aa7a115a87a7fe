"""edgek: a lightweight, k3s-style Kubernetes distribution for edge devices."""

__version__ = "0.1.0"

#: The Kubernetes API version edgek speaks (reported by /version).
KUBERNETES_VERSION = "v1.33.0"
