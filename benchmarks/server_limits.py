"""Connection limits of `xretrieve serve` under hostile clients, on loopback: what a server does with them.

Probes, each bounded in count and time: plain /healthz throughput over one keep-alive connection (the cost of
the HTTP parser); a 20 MB header sent at full speed, with the latency of a normal request sent meanwhile; a
head sent a byte a second; a body shorter than its Content-Length; 600 connections opened and left idle.
`--before-root DIR` runs the same probes first against the xretrieve checked out in DIR. Usage:

    .venv/bin/python benchmarks/server_limits.py --index runs/server-load/index [--before-root DIR]

The index only has to exist: /healthz answers while it loads. Writes OUT.md and OUT.json.
"""

import argparse
import json
import select
import shlex
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from server_load import HOST, RESULTS, ROOT, Server, free_port, machine_busy_s  # noqa: E402

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
PROBE_LIMIT_S = 40.0  # a probe the server leaves hanging is cut here


def connect(port: int, timeout: float = PROBE_LIMIT_S) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=5)
    sock.settimeout(timeout)
    return sock


def until_closed(sock: socket.socket) -> tuple[bytes, str]:
    """What the server sends until it closes: (first bytes, "closed" | "reset" | "still open")."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return data[:40], "still open"
    except ConnectionResetError:
        return data[:40], "reset"
    return data[:40], "closed"


def healthz_rate(port: int, n: int = 2000) -> float:
    with connect(port) as sock:
        started = time.monotonic()
        for _ in range(n):
            sock.sendall(HEALTHZ)
            got = b""
            while not got.endswith(b'{"status":"ok"}'):
                got += sock.recv(4096)
        return round(n / (time.monotonic() - started), 1)


def normal_latency_ms(port: int) -> str:
    """A plain GET /healthz: its status line and milliseconds, or the error it met."""
    started = time.monotonic()
    try:
        with connect(port, 20) as sock:
            sock.sendall(HEALTHZ)
            status = sock.recv(4096).split(b"\r\n")[0].decode(errors="replace")
    except OSError as exc:
        return type(exc).__name__
    return f"{status} in {(time.monotonic() - started) * 1000:.1f} ms"


def huge_header(port: int, megabytes: int = 20) -> dict:
    """Send a `megabytes` header at full speed while a normal request is timed alongside."""
    outcome = {}

    def send():
        started = time.monotonic()
        with connect(port) as sock:
            try:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
                block = b"a" * (1 << 20)
                for _ in range(megabytes):
                    sock.sendall(block)
                sock.sendall(b"\r\n\r\n")
            except OSError:
                pass  # the server stopped reading: what it answered is read below
            first, how = until_closed(sock)
        outcome.update(answer=first.split(b"\r\n")[0].decode(errors="replace"), end=how)
        outcome["seconds"] = round(time.monotonic() - started, 2)

    thread = threading.Thread(target=send)
    thread.start()
    time.sleep(0.05)
    outcome["normal_request_meanwhile"] = normal_latency_ms(port)
    thread.join(PROBE_LIMIT_S + 10)
    return outcome


def slow_head(port: int) -> dict:
    """A header that never ends, sent a byte a second (for at most PROBE_LIMIT_S)."""
    started, how = time.monotonic(), "still open"
    with connect(port, 1.0) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        while time.monotonic() - started < PROBE_LIMIT_S:
            try:
                sock.send(b"a")
                if sock.recv(1024) == b"":
                    how = "closed"
                    break
            except TimeoutError:
                continue  # nothing from the server: it is still waiting
            except OSError:
                how = "reset"
                break
    return {"end": how, "seconds": round(time.monotonic() - started, 1)}


def short_body(port: int) -> dict:
    started = time.monotonic()
    with connect(port) as sock:
        sock.sendall(b"POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
        sock.sendall(b"Content-Length: 100\r\n\r\n" + b'{"query": ')
        first, how = until_closed(sock)
    answer = first.split(b"\r\n")[0].decode(errors="replace")
    return {"answer": answer, "end": how, "seconds": round(time.monotonic() - started, 1)}


def idle_connections(port: int, n: int = 600) -> dict:
    """Open `n` connections that send nothing; count those the server answers or closes within a second."""
    socks = []
    try:
        for _ in range(n):
            socks.append(connect(port))
        time.sleep(1.0)
        poller = select.poll()
        for sock in socks:
            poller.register(sock, select.POLLIN)
        answered = len(poller.poll(0))  # readable: a 503 or a close; the rest are held open
        meanwhile = normal_latency_ms(port)
        return {"opened": n, "answered_or_closed_within_1s": answered, "normal_request_meanwhile": meanwhile}
    finally:
        for sock in socks:
            sock.close()


def probe(port: int) -> dict:
    busy, started = machine_busy_s(), time.monotonic()
    result = {"healthz_per_s": healthz_rate(port), "huge_header": huge_header(port)}
    slow: dict = {}
    threads = [
        threading.Thread(target=lambda: slow.update(slow_head=slow_head(port))),
        threading.Thread(target=lambda: slow.update(short_body=short_body(port))),
    ]
    for thread in threads:
        thread.start()
    result["idle_connections"] = idle_connections(port)
    for thread in threads:
        thread.join(PROBE_LIMIT_S + 10)
    result |= slow
    result["machine_cores_busy"] = round((machine_busy_s() - busy) / (time.monotonic() - started), 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default="runs/server-load/index")
    parser.add_argument("--before-root", help="also probe the xretrieve checked out in this folder, first")
    parser.add_argument("--out", default=str(RESULTS / "server_limits"))
    args = parser.parse_args()
    log_dir = ROOT / "runs" / "server-limits"
    log_dir.mkdir(parents=True, exist_ok=True)
    roots = ([("before", Path(args.before_root).resolve())] if args.before_root else []) + [("after", ROOT)]
    result = {"command": shlex.join(["python", "benchmarks/server_limits.py", *sys.argv[1:]]), "runs": []}
    for name, root in roots:
        port = free_port()
        command = [sys.executable, "-m", "xretrieve", "serve", "--index", str(Path(args.index).resolve())]
        server = Server(name, command + ["--port", str(port)], port, log_dir, cwd=root, env={"PYTHONPATH": str(root)})
        server.start()
        try:
            server.wait_ready()  # probes do not compete with the model loading
            run = {"name": name, "root": str(root), **probe(port)}
        finally:
            server.stop()
        print(json.dumps(run), flush=True)
        result["runs"].append(run)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# Connection limits under hostile clients",
        "",
        f"Generated by `{result['command']}`: each probe on 127.0.0.1, servers one at a time with their defaults.",
        "",
        "| probe | " + " | ".join(run["name"] for run in result["runs"]) + " |",
        "| --- | " + " | ".join("---" for _ in result["runs"]) + " |",
    ]
    for key in ("healthz_per_s", "huge_header", "slow_head", "short_body", "idle_connections", "machine_cores_busy"):
        lines.append(f"| {key} | " + " | ".join(f"`{json.dumps(run[key])}`" for run in result["runs"]) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
