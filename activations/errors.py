"""The one exception type users see: a one-line message naming the problem and the fix."""


class ToolkitError(Exception):
    """A problem with the user's input or environment, reported as one line.

    The command line prints ``error: <message>`` and exits with status 2; the Python API
    raises it unchanged. Never raise it for a bug in the toolkit itself.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))
