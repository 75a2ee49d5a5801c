"""What the index holds for one document now."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path

from serving.api.deps import StateDep, TenantDep
from serving.api.models import DocumentState

router = APIRouter(prefix="/v1/documents", tags=["documents"])


@router.get("/{doc_id}", response_model=DocumentState)
async def get_document(
    doc_id: Annotated[str, Path(min_length=1, max_length=256)], state: StateDep, tenant: TenantDep
) -> DocumentState:
    """Indexed version, chunk count and indexed_at of the caller's document (404-free: never seen = null)."""
    st = await asyncio.to_thread(state.document_state, tenant, doc_id)
    return DocumentState(doc_id=doc_id, tenant=tenant, **st)
