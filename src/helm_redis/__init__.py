"""Form, verify and drill the Redis Cluster of the redis-cluster Helm chart."""

__version__ = "0.1.0"
