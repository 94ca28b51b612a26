"""moto's S3 server, one request at a time: `python scripts/moto_server.py HOST PORT`.

`moto_server` serves each request on its own thread, and moto checks `If-Match` and
`If-None-Match` before it writes without holding any lock (moto 5.2.5,
`S3Response.put_object`), so under load two conditional creates of one key can both succeed:
`conformance_on_moto` and the 16-replica race saw two winners at load average 5-12. Served on
one thread, each request finishes before the next starts, and every conditional write is
atomic, as S3's are. (werkzeug then answers HTTP/1.0 and closes each connection, so an idle
client cannot hold the server.)
"""

import sys

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: moto_server.py HOST PORT")
    host, port = sys.argv[1], int(sys.argv[2])
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, app, threaded=False, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
