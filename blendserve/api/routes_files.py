"""/v1/files: upload (streamed to disk), list, retrieve, content, delete."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Query, UploadFile
from fastapi.responses import FileResponse

from blendserve.api.deps import Ctx, Owner
from blendserve.api.schemas import ErrorEnvelope, FileDeleted, FileList, FileObject, as_json, file_object, list_page
from blendserve.core import files
from blendserve.core.errors import InvalidRequest, NotFound

router = APIRouter(
    prefix="/v1/files",
    tags=["files"],
    responses={400: {"model": ErrorEnvelope}, 401: {"model": ErrorEnvelope}, 404: {"model": ErrorEnvelope}},
)


@router.post("", response_model=FileObject)
def create_file(
    ctx: Ctx,
    owner: Owner,
    file: UploadFile,
    purpose: Annotated[str, Form()],
    expires_after_anchor: Annotated[str | None, Form(alias="expires_after[anchor]")] = None,
    expires_after_seconds: Annotated[int | None, Form(alias="expires_after[seconds]")] = None,
):
    ttl = None
    if expires_after_seconds is not None:
        if expires_after_anchor not in (None, "created_at") or not 3600 <= expires_after_seconds <= 2592000:
            raise InvalidRequest(
                "expires_after needs anchor 'created_at' and seconds between 3600 and 2592000.",
                param="expires_after",
                code="invalid_value",
            )
        ttl = expires_after_seconds
    limits = files.UploadLimits(ctx.settings.max_file_bytes)
    row = files.store_upload(ctx.db, ctx.blobs, limits, owner, file.filename or "upload", purpose, file.file, ttl)
    return file_object(row)


@router.get("", response_model=FileList)
async def list_files(
    ctx: Ctx,
    owner: Owner,
    purpose: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 10000,
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
):
    return as_json(await ctx.run(_file_page, ctx, owner, purpose, limit, order, after))


def _file_page(ctx: Ctx, owner: str, purpose: str | None, limit: int, order: str, after: str | None) -> FileList:
    rows, has_more = files.list_files(ctx.db, owner, purpose, limit, order, after)
    return list_page(FileList, [file_object(r) for r in rows], has_more)


@router.get("/{file_id}", response_model=FileObject)
async def retrieve_file(ctx: Ctx, owner: Owner, file_id: str):
    return as_json(file_object(await ctx.run(files.get_file, ctx.db, owner, file_id)))


@router.get(
    "/{file_id}/content", response_class=FileResponse, responses={200: {"content": {"application/octet-stream": {}}}}
)
def file_content(ctx: Ctx, owner: Owner, file_id: str):
    row = files.get_file(ctx.db, owner, file_id)
    path = ctx.blobs.path(row.id)
    if not path.exists():
        raise NotFound(f"The content of file {file_id} is missing.", param="file_id", code="file_not_found")
    return FileResponse(path, media_type="application/octet-stream", filename=row.filename)


@router.delete("/{file_id}", response_model=FileDeleted)
def delete_file(ctx: Ctx, owner: Owner, file_id: str):
    files.delete_file(ctx.db, ctx.blobs, owner, file_id)
    return FileDeleted(id=file_id, deleted=True)
