"""The one error type ParamLens raises for bad input."""


class ParamLensError(Exception):
    """Bad input or an unusable file.

    The message names what was wrong (file, tensor, shape) and how to fix it. The CLI prints it as one
    line and exits non-zero.
    """
