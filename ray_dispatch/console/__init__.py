"""The deployment's web face: the operations console and its Prometheus ``/metrics``."""
