"""Typed dependencies: the app state and the caller's tenant (from the API key, never the body).

Both are ``async``: FastAPI runs a plain ``def`` dependency in its thread pool, and two thread
hand-offs per request cost more than these lookups (each waits for the GIL while another request
runs Python). Each is one level deep: FastAPI solves dependencies per request, in Python.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader

from serving.api.state import ApiState

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="Maps to one tenant.")


async def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


async def get_tenant(request: Request, key: Annotated[str | None, Security(api_key_header)]) -> str:
    state = await get_state(request)  # called, not Depends(get_state): one dependency less to solve
    if not key:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing X-API-Key header", headers={"WWW-Authenticate": "ApiKey"}
        )
    tenant = state.settings.api_keys.get(key)
    if tenant is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "unknown API key", headers={"WWW-Authenticate": "ApiKey"}
        )
    return tenant


StateDep = Annotated[ApiState, Depends(get_state)]
TenantDep = Annotated[str, Depends(get_tenant)]
