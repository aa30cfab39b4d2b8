"""The served model version: read it, and switch to the registry's promoted version."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from salesformer.service.core import SalesService
from salesformer.service.routes.common import ERRORS
from salesformer.service.versions import Reloader


class ModelVersionOut(BaseModel):
    """The model served now."""

    model_config = ConfigDict(extra="forbid")
    model: str
    version: int | None


class ReloadOut(BaseModel):
    """The version served before and after a reload."""

    model_config = ConfigDict(extra="forbid")
    previous: int | None
    version: int | None
    changed: bool


def router(service: SalesService, reloader: Reloader, read: Any, write: Any) -> APIRouter:
    router = APIRouter()

    @router.get("/models/current", response_model=ModelVersionOut, responses=ERRORS,
                dependencies=[read])  # fmt: skip
    async def get_current() -> ModelVersionOut:
        """The model and registry version served (null outside a registry)."""
        return ModelVersionOut(model=str(service.live.model.name), version=service.version)

    @router.post("/models/reload", response_model=ReloadOut, responses=ERRORS,
                 dependencies=[write])  # fmt: skip
    def post_reload() -> ReloadOut:
        """Serve the registry's promoted version; in-flight requests finish on the old one."""
        done = reloader.reload()
        return ReloadOut(previous=done.previous, version=done.version, changed=done.changed)

    return router
