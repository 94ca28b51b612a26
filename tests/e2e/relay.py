#!/usr/bin/env python3
"""A TLS front or a forward HTTP proxy before `git hypha serve`, for tests/e2e/tls.rs.

    relay.py tls CERT KEY [CLIENT_CA]   TLS on 127.0.0.1:0 (client certificates required when
                                        CLIENT_CA is given), bytes passed to the upstream as is
    relay.py proxy ALIAS [USER:PASSWORD]
                                        a forward proxy for http:// URLs (absolute-form request
                                        lines), with Basic proxy authentication when given

Prints the port it listens on, then reads the upstream's `host:port` from stdin (so the
server can be started with this relay's URL as its public URL). A TLS connection goes to the
upstream. A proxied request for the host ALIAS (`host:port` nothing listens on) goes to the
upstream, so a request that reaches the server went through here; one for another host (an
S3 server's presigned URL) goes to that host. Appends one line per proxied request to the
file in $RELAY_LOG when set.
"""
import base64
import os
import socket
import ssl
import sys
import threading


def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def both_ways(a, b):
    t = threading.Thread(target=pipe, args=(b, a), daemon=True)
    t.start()
    pipe(a, b)
    t.join()
    a.close()
    b.close()


def log(line):
    path = os.environ.get("RELAY_LOG")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def serve_tls(conn, upstream, context):
    try:
        tls = context.wrap_socket(conn, server_side=True)
    except (ssl.SSLError, OSError) as e:
        log(f"handshake refused: {e}")
        conn.close()
        return
    both_ways(tls, socket.create_connection(upstream))


def serve_proxy(conn, upstream, alias, auth):
    head = b""
    while b"\r\n\r\n" not in head:
        data = conn.recv(65536)
        if not data or len(head) > 65536:
            conn.close()
            return
        head += data
    head, rest = head.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    method, target, version = lines[0].split(b" ", 2)
    headers = lines[1:]
    if auth is not None:
        expected = b"Basic " + base64.b64encode(auth.encode())
        given = [h.split(b":", 1)[1].strip() for h in headers
                 if h.lower().startswith(b"proxy-authorization:")]
        if given != [expected]:
            log(f"refused {method.decode()} (proxy authentication)")
            conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                         b"Proxy-Authenticate: Basic realm=\"test\"\r\n"
                         b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            conn.close()
            return
    if not target.startswith(b"http://"):
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        conn.close()
        return
    host_and_path = target[len(b"http://"):]
    slash = host_and_path.find(b"/")
    path = host_and_path[slash:] if slash >= 0 else b"/"
    hostport = (host_and_path[:slash] if slash >= 0 else host_and_path).decode()
    log(f"{method.decode()} http://{hostport}")
    kept = [h for h in headers if not h.lower().startswith((b"proxy-", b"connection:"))]
    # One request per connection: the answer then ends with the connection.
    out = b"\r\n".join([method + b" " + path + b" " + version] + kept +
                       [b"Connection: close"]) + b"\r\n\r\n" + rest
    if hostport != alias:
        host, port = hostport.rsplit(":", 1) if ":" in hostport else (hostport, "80")
        upstream = (host, int(port))
    up = socket.create_connection(upstream)
    up.sendall(out)
    both_ways(conn, up)


def main():
    mode = sys.argv[1]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print(listener.getsockname()[1], flush=True)
    host, port = sys.stdin.readline().strip().rsplit(":", 1)
    upstream = (host, int(port))
    if mode == "tls":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[2], sys.argv[3])
        if len(sys.argv) > 4:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(sys.argv[4])
        handler = lambda c: serve_tls(c, upstream, context)
    else:
        alias = sys.argv[2]
        auth = sys.argv[3] if len(sys.argv) > 3 else None
        handler = lambda c: serve_proxy(c, upstream, alias, auth)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handler, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
