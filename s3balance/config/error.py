"""The one configuration error."""


class ConfigError(Exception):
    """The configuration is invalid; ``str(error)`` is one line naming the key."""
