"""OpenAPI schema post-processing (drf-spectacular): document the error envelope on every operation.

Every API error, ours or DRF's, is rendered by ``core.errors.api_exception_handler`` as
``{"errors": [{"field": ..., "code": ..., "message": ...}]}``; the schema says so with a ``4XX`` response on
each operation, so that clients (and the schema fuzzer, tests/test_api_fuzz.py) know what a refusal looks like.
"""

from __future__ import annotations

from typing import Any

ERROR_ENVELOPE = "ErrorEnvelope"

_ENVELOPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every API error: one entry per problem, the message in the request's language.",
    "properties": {
        "errors": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "field": {
                        "type": "string",
                        "nullable": True,
                        "description": "The input the error concerns (`lines[1].amount_minor`), null for the request",
                    },
                    "code": {"type": "string", "description": "Machine-readable code, e.g. `required`"},
                    "message": {"type": "string", "description": "Human-readable, translated"},
                },
                "required": ["field", "code", "message"],
            },
        }
    },
    "required": ["errors"],
}


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """POSTPROCESSING_HOOKS entry: an ``ErrorEnvelope`` component and a ``4XX`` response on every operation."""
    result.setdefault("components", {}).setdefault("schemas", {})[ERROR_ENVELOPE] = _ENVELOPE_SCHEMA
    error_response = {
        "description": "The request was refused (invalid input, authentication, permission, not found, conflict, "
        "or 429: over the API key's rate limit, retry after the Retry-After header's seconds)",
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_ENVELOPE}"}}},
    }
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["responses"].setdefault("4XX", error_response)
    return result
