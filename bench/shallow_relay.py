"""Byte-counting TCP relay for bench/shallow.sh: listen on 127.0.0.1:LISTEN, forward each
connection to 127.0.0.1:TARGET, and count the bytes sent back to clients (bytes down).
`kill -USR1` writes the count so far to COUNT_FILE and resets it. Not a proxy of HTTP: bytes."""
import signal, socket, sys, threading

listen, target, count_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
down = [0]
lock = threading.Lock()

def pipe(src, dst, counted):
    try:
        while True:
            data = src.recv(1 << 16)
            if not data:
                break
            if counted:
                with lock:
                    down[0] += len(data)
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

def report(*_):
    with lock:
        n, down[0] = down[0], 0
    with open(count_file, "w") as f:
        f.write(f"{n}\n")

signal.signal(signal.SIGUSR1, report)
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", listen))
server.listen(64)
while True:
    try:
        client, _ = server.accept()
    except InterruptedError:
        continue
    upstream = socket.create_connection(("127.0.0.1", target))
    threading.Thread(target=pipe, args=(client, upstream, False), daemon=True).start()
    threading.Thread(target=pipe, args=(upstream, client, True), daemon=True).start()
