"""HTTP edge of the connectors service: the admin API and the one OAuth callback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from warden_connectors.api.connectors import build_admin_router
from warden_connectors.api.keys import build_keys_router
from warden_connectors.api.oauth import build_callback_router

__all__ = ["build_router"]


def build_router(admin: Callable[..., Any]) -> APIRouter:
    router = APIRouter()
    router.include_router(build_admin_router(admin))
    router.include_router(build_keys_router(admin))
    router.include_router(build_callback_router())
    return router
