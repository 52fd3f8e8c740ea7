"""The error types ParamLens raises for bad input."""


class ParamLensError(Exception):
    """Bad input or an unusable file.

    The message names what was wrong (file, tensor, shape) and how to fix it. The CLI prints it as one
    line and exits with status 1.
    """


class UsageError(ParamLensError):
    """An option value outside its allowed range; the CLI prints it as one line and exits with status 2."""


class Interrupted(ParamLensError):
    """Stopped by Ctrl-C; what was kept (a checkpoint) is in the message. The CLI exits with status 130."""


class NotFound(ParamLensError):
    """The analysis ran and found no answer (no input inverts the network, no order reproduces the data); the CLI
    exits with status 4."""
