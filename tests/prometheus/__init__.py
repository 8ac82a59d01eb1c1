"""Tests of ``/metrics`` (the Prometheus exposition), its Grafana dashboard and histogram buckets."""
