"""kubekeeper: node and cluster maintenance agents driven by one policy file."""

__version__ = "0.1.0"
