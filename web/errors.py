"""The errors the web room raises; one handler per kind turns them into a page or the JSON error shape."""

from __future__ import annotations


class WebError(Exception):
    """A request that cannot be answered as asked. `field` names the bad parameter or form field."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, field: str | None = None, *, status: int | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code

    def to_json(self) -> dict:
        err: dict = {"code": self.code, "message": self.message}
        if self.field is not None:
            err["field"] = self.field
        return {"error": err}


class NotSignedIn(WebError):
    status = 401
    code = "unauthorized"


class Forbidden(WebError):
    status = 403
    code = "forbidden"


class NotFound(WebError):
    status = 404
    code = "not_found"
