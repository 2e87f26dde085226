"""Routers and generated clients used by tests/test_proxy.py."""
