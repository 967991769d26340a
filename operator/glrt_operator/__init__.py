"""glrt-operator: GitLab runners (glrt- tokens) as Kubernetes `Runner` resources."""

__version__ = "0.1.0"
