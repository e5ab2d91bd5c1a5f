"""Exceptions shared by the engine and its clients.

Every failure that crosses the wire is a (code, message) pair: the code is a stable
string a program can branch on (listed in PROTOCOL.md), the message is a sentence a user
can act on.
"""


class ProtocolError(Exception):
    """A message broke the protocol; the engine answers it with an `error` reply."""

    def __init__(self, code: str, message: str, job: str | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.job = job


class RequestRefused(ValueError):
    """A request a pipeline cannot serve as asked: the user can fix it (fewer parts, another
    asset id, an image with the object cut out). The engine answers it with `code` and the
    message, and logs no traceback; everything else a pipeline raises is `pipeline_failed`."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class EngineError(Exception):
    """The engine answered a request with an `error` reply (or could not be reached)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class EngineUnavailable(EngineError):
    """No engine answered, or the engine stopped answering (crashed or was killed)."""


class JobCancelled(EngineError):
    """The job was cancelled (by the client, or because the engine shut down)."""
