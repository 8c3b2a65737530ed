"""The kiosk agent: services (catalogue, dossiers, due dates), devices, sync."""


class AgentError(Exception):
    """Base class of every error raised by the ``edge_agent`` package."""


class CitizenError(AgentError):
    """A request a citizen made cannot be served; ``message_vi`` is shown to them."""

    def __init__(self, message: str, message_vi: str) -> None:
        super().__init__(message)
        self.message_vi = message_vi
