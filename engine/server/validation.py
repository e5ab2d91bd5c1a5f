"""Turn a decoded job message into a pipeline Request, or a specific ProtocolError.

Runs before a job is accepted, so a client learns about a bad image or mesh at once
instead of after waiting in the queue.
"""

from __future__ import annotations

from bridge.errors import ProtocolError
from bridge.protocol import PART_REQUESTS, Message, decode_parts, validate_request
from engine.render.image_prep import decode_image

from .pipelines import LIBRARY, Request


def parse_request(message: Message) -> Request:
    """Validate every field and array of a job request (generate, edit, candidates,
    library.*)."""
    params = validate_request(message)
    image = message.arrays.get("image")
    parts = []
    if message.type in PART_REQUESTS:
        parts = decode_parts(params.pop("parts"), message.arrays)
    if message.type == "edit":
        _check_targets(params["targets"], parts)
    return Request(
        operation=message.type,
        pipeline=params.pop("pipeline", LIBRARY),
        params=params,
        image=None if image is None else decode_image(image),
        parts=parts,
    )


def _check_targets(targets: list, parts: list) -> None:
    indices = {part.index for part in parts}
    if (not targets or len(set(map(repr, targets))) != len(targets)
            or not all(isinstance(i, int) and not isinstance(i, bool) and i in indices
                       for i in targets)):
        raise ProtocolError("invalid_part", "'targets' must list distinct indices of parts in "
                            f"the request (have {sorted(indices)}), at least one")
