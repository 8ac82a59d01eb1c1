"""The OpenAPI 3 description of the console's JSON API (served at ``/api/openapi.json``)."""

from __future__ import annotations

from typing import Any

from actors.transports.http_api import _json, _object

_ERROR = {"$ref": "#/components/schemas/Error"}
_ANY_OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}
_IDS = {"type": "array", "items": {"type": "string"}}


def _get(summary: str, schema: dict[str, Any], parameters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {
            "200": {"description": "OK", "content": _json(schema)},
            "401": {"description": "missing or wrong token", "content": _json(_ERROR)},
        },
    }
    if parameters:
        operation["parameters"] = parameters
    return {"get": operation}


def _post(summary: str, body: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, "content": _json(body)},
            "responses": {
                "200": {"description": "done; the body says what happened", "content": _json(answer)},
                "400": {"description": "invalid body; the text names the field", "content": _json(_ERROR)},
                "401": {"description": "missing or wrong token", "content": _json(_ERROR)},
            },
        }
    }


def _query(name: str, description: str, enum: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if enum:
        schema["enum"] = enum
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def openapi_document(deployment: str) -> dict[str, Any]:
    """Return the OpenAPI 3.0 description of the console API of deployment ``deployment``."""
    replayed = _object(
        {
            "results": {"type": "array", "items": {"$ref": "#/components/schemas/ReplayResult"}},
            "delivered": {"type": "integer", "description": "how many were routed without failing again"},
        }
    )
    return {
        "openapi": "3.0.3",
        "info": {
            "title": f"ray_dispatch console of deployment {deployment!r}",
            "version": "1",
            "description": "Every call needs the console's token: ?token=, Authorization: Bearer, or the cookie"
            " the console sets when a page is opened with the token.",
        },
        "security": [{"bearerAuth": []}, {"queryToken": []}],
        "paths": {
            "/api/status": _get("Everything Deployment.status() returns", _ANY_OBJECT),
            "/api/topology": _get(
                "The live topology picture (SVG) with per-link counts, rates and replicas",
                _object(
                    {
                        "svg": {"type": "string"},
                        "endpoints": _IDS,
                        "rates": {"type": "object", "additionalProperties": {"type": "number"}},
                        "replicas": {"type": "object", "additionalProperties": {"type": "integer"}},
                    }
                ),
            ),
            "/api/endpoints": _get(
                "Each endpoint's replicas (node, health, connections), rates and pending; each dispatcher's latencies",
                _object(
                    {
                        "endpoints": {"type": "array", "items": _ANY_OBJECT},
                        "dispatchers": {"type": "array", "items": _ANY_OBJECT},
                    }
                ),
            ),
            "/api/failures": _get(
                "Failure records, oldest first, filtered",
                _object(
                    {"failures": {"type": "array", "items": {"$ref": "#/components/schemas/Failure"}}, "count": {}}
                ),
                [
                    _query("direction", "only this direction", ["inbound", "event", "outbound"]),
                    _query("endpoint", "only records of this endpoint"),
                    _query("q", "only records whose id, reason, stage or content contains this text"),
                ],
            ),
            "/api/failures/{failure_id}": {
                "get": {
                    "summary": "One failure record",
                    "parameters": [
                        {"name": "failure_id", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": {"description": "OK", "content": _json({"$ref": "#/components/schemas/Failure"})},
                        "401": {"description": "missing or wrong token", "content": _json(_ERROR)},
                        "404": {"description": "no record has that id", "content": _json(_ERROR)},
                    },
                }
            },
            "/api/failures/replay": _post(
                "Route failed messages again; a record goes once its message is routed",
                _object(
                    {"failure_ids": _IDS, "endpoint": {"type": "string", "nullable": True}}, required=["failure_ids"]
                ),
                replayed,
            ),
            "/api/failures/purge": _post(
                "Remove failure records: the ids given, or every one with all=true",
                _object({"failure_ids": _IDS, "all": {"type": "boolean"}}),
                _object({"purged": {"type": "integer"}}),
            ),
            "/api/config": _get(
                "The deployment's config: YAML and object, secrets masked",
                _object(
                    {
                        "yaml": {"type": "string"},
                        "config": _ANY_OBJECT,
                        "generation": {"type": "integer", "nullable": True},
                    }
                ),
            ),
            "/api/history": _get(
                "The config generations the deployment applied, oldest first (ray-dispatch history)",
                _object({"generations": {"type": "array", "items": _ANY_OBJECT}}),
            ),
            "/api/config/preview": _post(
                "Dry run of a config (YAML text): its plan and how recent traffic would route; changes nothing",
                _object({"yaml": {"type": "string"}, "examples": {"type": "integer"}}),
                _object(
                    {
                        "text": {
                            "type": "string",
                            "description": "the plan, as ray-dispatch apply --dry-run prints it",
                        },
                        "changed": {"type": "integer", "description": "recent messages that would route elsewhere"},
                        "compared": {"type": "integer", "description": "recent messages replayed"},
                    }
                ),
            ),
            "/api/openapi.json": _get("This document", _ANY_OBJECT),
            "/metrics": {
                "get": {
                    "summary": "Prometheus exposition text (no token needed when the console listens on loopback)",
                    "responses": {
                        "200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Error": _object({"error": {"type": "string"}}, required=["error"]),
                "Failure": _object(
                    {
                        "failure_id": {"type": "string"},
                        "reason": {"type": "string"},
                        "direction": {"type": "string"},
                        "endpoint": {"type": "string"},
                        "destination": {"type": "string", "nullable": True},
                        "stage": {"type": "string"},
                        "attempts": {"type": "integer"},
                        "timestamp": {"type": "string"},
                        "message": _ANY_OBJECT,
                    }
                ),
                "ReplayResult": _object(
                    {
                        "failure_id": {"type": "string"},
                        "destinations": _IDS,
                        "failures": _IDS,
                        "error": {"type": "string", "nullable": True, "description": "why it could not be replayed"},
                    }
                ),
            },
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer"},
                "queryToken": {"type": "apiKey", "in": "query", "name": "token"},
            },
        },
    }
