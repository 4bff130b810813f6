"""The Flower components of `invoke fleet` (defined in pytools/fleet/apps.py)."""

from pytools.fleet.apps import client, server

__all__ = ["client", "server"]
