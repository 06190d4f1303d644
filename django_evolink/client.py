"""The public home of the Evolink HTTP client (``django_evolink.client.EvolinkClient``).

The client lives in :mod:`django_evolink.evolink.client`; this module keeps the import
path the documentation promises.
"""

from __future__ import annotations

from .evolink.client import EvolinkClient, get_client

__all__ = ["EvolinkClient", "get_client"]
