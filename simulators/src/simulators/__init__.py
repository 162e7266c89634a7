"""Simulators of the outside world, each speaking the real API shape."""
