"""The serving contract without KServe: request checks (:mod:`.validation`)
and response shapes (:mod:`.outputs`) of the ``roi`` model server, as plain
functions that the server in ``serving/roi_server`` calls and tests call
directly."""

from autoroi.serving.outputs import OUTPUTS, input_metadata, output_metadata, v1_predictions, v2_outputs
from autoroi.serving.validation import (
    BAD_REQUEST,
    DEFAULT_MAX_AMOUNT,
    DEFAULT_MAX_BATCH,
    FIELDS,
    PAYLOAD_TOO_LARGE,
    InputError,
    Limits,
    Tensor,
    Vocabulary,
    check_row,
    parse_v1,
    parse_v2,
)

__all__ = [
    "BAD_REQUEST",
    "DEFAULT_MAX_AMOUNT",
    "DEFAULT_MAX_BATCH",
    "FIELDS",
    "OUTPUTS",
    "PAYLOAD_TOO_LARGE",
    "InputError",
    "Limits",
    "Tensor",
    "Vocabulary",
    "check_row",
    "input_metadata",
    "output_metadata",
    "parse_v1",
    "parse_v2",
    "v1_predictions",
    "v2_outputs",
]
