"""Tests on a real Kubernetes control plane (local, loopback only): `make e2e` or `pytest -m e2e`."""
