"""moto's S3 server, one request at a time: `python scripts/moto_server.py HOST PORT`.

`moto_server` serves each request on its own thread, and moto checks `If-Match` and
`If-None-Match` before it writes without holding any lock (moto 5.2.5,
`S3Response.put_object`), so under load two conditional creates of one key can both succeed:
`conformance_on_moto` and the 16-replica race saw two winners at load average 5-12. Served on
one thread, each request finishes before the next starts, and every conditional write is
atomic, as S3's are. (werkzeug then answers HTTP/1.0 and closes each connection, so an idle
client cannot hold the server.)

moto 5.2.5 also answers ListParts with the root element `ListPartsResponse` where S3 says
`ListPartsResult`, which the Rust SDK refuses, so no multipart upload could complete (bench
results 2026-12-07-far): `ListPartsFix` renames that one element, nothing else.
"""

import sys

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


class ListPartsFix:
    """WSGI middleware: `ListPartsResponse` -> `ListPartsResult` in ListParts answers (a GET
    with `uploadId` in the query); every other request passes untouched."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        query = environ.get("QUERY_STRING", "")
        if environ.get("REQUEST_METHOD") != "GET" or "uploadId=" not in query:
            return self.app(environ, start_response)
        held = {}

        def hold(status, headers, exc_info=None):
            held["status"], held["headers"] = status, headers
            return lambda data: None  # moto returns its body; it never writes through this

        body = b"".join(self.app(environ, hold))
        if body.lstrip().startswith(b"<?xml") and b"<ListPartsResponse" in body:
            body = body.replace(b"<ListPartsResponse", b"<ListPartsResult", 1)
            body = body.replace(b"</ListPartsResponse>", b"</ListPartsResult>", 1)
        headers = [(k, v) for k, v in held["headers"] if k.lower() != "content-length"]
        start_response(held["status"], headers + [("Content-Length", str(len(body)))])
        return [body]


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: moto_server.py HOST PORT")
    host, port = sys.argv[1], int(sys.argv[2])
    app = ListPartsFix(DomainDispatcherApplication(create_backend_app))
    run_simple(host, port, app, threaded=False, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
