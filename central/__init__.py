"""Central side of APS: the collector, its store, the fleet view and the admin CLI."""


class CentralError(Exception):
    """Base class of every error raised by the ``central`` package."""
