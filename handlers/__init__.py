"""Thin Lambda entry points: each imports only what its own function needs."""
