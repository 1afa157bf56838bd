"""An OpenAPI document of the consumer API (``/v1``) as the platform accepts it, for schema fuzzing: the
platform serves none (it is OpenAI's API, documented by OpenAI). The body is the part of OpenAI's
chat-completions request the platform reads (``arenahub.protocol.openai.ChatCompletionRequest``), and
of the image generation request (``arenahub.protocol.images.ImageGenerationRequest``);
other fields are allowed and passed along, as OpenAI's clients send many."""

from __future__ import annotations

from typing import Any

from tests.fuzz.support import MODELS

_ERROR = {"description": "OpenAI error envelope", "content": {"application/json": {"schema": {
    "type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["message", "type", "param", "code"],
        "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                       "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}}}}}

_PART = {"oneOf": [
    {"type": "object", "required": ["type", "text"], "properties": {
        "type": {"const": "text"}, "text": {"type": "string"}}},
    {"type": "object", "required": ["type", "image_url"], "properties": {
        "type": {"const": "image_url"},
        "image_url": {"type": "object", "required": ["url"], "properties": {
            "url": {"type": "string"}, "detail": {"enum": ["auto", "low", "high"]}}}}},
]}

_MESSAGE = {"type": "object", "required": ["role"], "properties": {
    "role": {"enum": ["system", "developer", "user", "assistant", "tool", "function"]},
    "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": _PART}, {"type": "null"}]},
    "name": {"type": ["string", "null"]},
}}

_COUNT = {"type": ["integer", "null"], "minimum": 1}

CHAT_REQUEST: dict[str, Any] = {"type": "object", "required": ["model", "messages"], "properties": {
    "model": {"enum": MODELS},  # models a registered client served: the request gets as far as routing
    "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
    "stream": {"type": "boolean"},
    "stream_options": {"type": ["object", "null"], "properties": {"include_usage": {"type": "boolean"}}},
    "max_tokens": _COUNT,
    "max_completion_tokens": _COUNT,
    "temperature": {"type": ["number", "null"]},
    "top_p": {"type": ["number", "null"]},
    "n": {"const": 1},
    "user": {"type": ["string", "null"]},
    "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
}}

IMAGE_REQUEST: dict[str, Any] = {"type": "object", "required": ["model", "prompt"], "properties": {
    "model": {"enum": MODELS},
    "prompt": {"type": "string", "minLength": 1},
    "n": {"type": "integer", "minimum": 1, "maximum": 10},
    "size": {"enum": ["256x256", "1024x1024", "1792x1024", "auto"]},
    "response_format": {"enum": ["url", "b64_json", None]},
    "quality": {"type": ["string", "null"], "maxLength": 32},
    "style": {"type": ["string", "null"], "maxLength": 32},
    "user": {"type": ["string", "null"]},
    "stream": {"const": False},
}}

_HEADERS = [
    {"name": "x-arenahub-conversation", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "keeps a conversation's follow-ups on one client (sticky routing)"},
]

CONSUMER_OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "arenahub consumer API (OpenAI-compatible)", "version": "1"},
    "security": [{"consumerKey": []}],
    "components": {"securitySchemes": {"consumerKey": {"type": "http", "scheme": "bearer"}}},
    "paths": {
        "/v1/chat/completions": {"post": {
            "summary": "A chat completion, streamed (SSE) or not",
            "parameters": _HEADERS,
            "requestBody": {"required": True, "content": {"application/json": {"schema": CHAT_REQUEST}}},
            "responses": {
                "200": {"description": "The completion (JSON, or text/event-stream when streamed)"},
                **{str(code): _ERROR for code in (400, 401, 402, 403, 404, 408, 413, 429, 499, 502, 503, 504)},
            },
        }},
        "/v1/images/generations": {"post": {
            "summary": "Images, from the clients that declare the images capability",
            "requestBody": {"required": True, "content": {"application/json": {"schema": IMAGE_REQUEST}}},
            "responses": {
                "200": {"description": "OpenAI's images response"},
                **{str(code): _ERROR for code in (400, 401, 402, 403, 404, 408, 413, 429, 499, 502, 503, 504)},
            },
        }},
        "/v1/models": {"get": {
            "summary": "The models of the connected clients this key may use",
            "responses": {"200": {"description": "OpenAI's model list", "content": {"application/json": {"schema": {
                "type": "object", "required": ["object", "data"], "properties": {
                    "object": {"const": "list"},
                    "data": {"type": "array", "items": {"type": "object", "required": ["id", "object"],
                                                         "properties": {"id": {"type": "string"},
                                                                        "object": {"const": "model"}}}}}}}}},
                          **{str(code): _ERROR for code in (401, 429)}},
        }},
    },
}
