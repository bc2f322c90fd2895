"""User-facing errors: each carries one sentence that names the bad input and the fix."""


class OdecamError(Exception):
    """An error caused by the user's input or environment; the CLI prints it without a traceback."""


class InputImageError(OdecamError):
    """A source, reference or driving image that cannot be used."""


class CheckpointError(OdecamError):
    """A checkpoint that is missing, corrupt, unsafe or of another architecture."""


class ConfigError(OdecamError, ValueError):
    """A model or training config field of the wrong type or out of the range the architecture can use."""
