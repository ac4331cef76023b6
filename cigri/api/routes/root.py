"""`/` (links to the collections), `/openapi.json` (the description, `cigri.api.openapi`) and
`/whoami` (the caller as the API sees them). `/` and `/openapi.json` are public."""

from __future__ import annotations

from flask import Blueprint
from flask.typing import ResponseReturnValue

from cigri.api.access import who
from cigri.api.openapi import DOCUMENT
from cigri.api.shapes import json_response, link

root = Blueprint("root", __name__)


@root.get("/")
def index() -> ResponseReturnValue:
    return json_response({"links": [link("self", "/"),
                                    link("collection", "/campaigns", "campaigns"),
                                    link("collection", "/clusters", "clusters")]},
                         headers={"Allow": "GET"})


@root.get("/openapi.json")
def openapi() -> ResponseReturnValue:
    return json_response(DOCUMENT)


@root.get("/whoami")
def whoami() -> ResponseReturnValue:
    identity = who()
    return json_response({"user": identity.user, "is_admin": identity.is_admin,
                          "method": identity.method})
