"""Partsmith bridge: the only code the Blender add-on and the engine share.

It imports only pyzmq, numpy and the standard library, so it runs inside Blender.
See PROTOCOL.md for the wire format.
"""

from .client import EngineClient, Job, JobStatus
from .errors import EngineError, EngineUnavailable, JobCancelled, ProtocolError
from .protocol import DEFAULT_ADDRESS, PROTOCOL_VERSION, Part, Result

__all__ = ["DEFAULT_ADDRESS", "EngineClient", "EngineError", "EngineUnavailable", "Job",
           "JobCancelled", "JobStatus", "PROTOCOL_VERSION", "Part", "ProtocolError", "Result"]
