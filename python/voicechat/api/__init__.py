"""The HTTP API: FastAPI app, routes, error mapping, middleware."""

from voicechat.api.app import create_app

__all__ = ["create_app"]
