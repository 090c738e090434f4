#!/usr/bin/env python3
"""test/http_stub.py: a loopback HTTP server for the tasker HTTP tests,
demo and benchmark (Python 3 standard library only).

    python3 test/http_stub.py PORTFILE [PORT]

Listens on 127.0.0.1 (port 0: any free port) and writes the port to
PORTFILE once it accepts connections.  Endpoints (GET unless said):

  /json                 200, a JSON object
  /text                 200, text/plain
  /echo[/...]           200, JSON of the request: method, path, query,
                        headers (lower-case names), body (parsed JSON or text)
  /status/CODE          that status, a short JSON body
  /delay/SECONDS        waits, then 200 JSON
  /big/BYTES            200, text/plain body of that many bytes
  /flaky/CODE/MODE/N    per Idempotency-Key: the first request answers CODE
                        with Retry-After N seconds (MODE seconds) or now + N
                        as an HTTP date (MODE date); later ones 200
  /redirect?to=PATH     302 to PATH
  /log                  JSON list of the requests seen: path, method,
                        idempotency_key, attempt, traceparent, at (not
                        logged itself)
  /stats                {"in_flight": n, "max_in_flight": n, "requests": n}
  /reset                clears the log and the counters
Every request is logged; any method works on any path.
"""
import email.utils
import json
import os
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
LOG = []
SEEN = set()
STATS = {"in_flight": 0, "max_in_flight": 0, "requests": 0}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate writes: without TCP_NODELAY the
    # body waits for the client's delayed ACK (about 40 ms a request).
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        pass

    def done(self):
        # A request stops counting as in flight when its answer starts, so
        # max_in_flight never exceeds what the client had outstanding.
        if getattr(self, "counted", False):
            self.counted = False
            with LOCK:
                STATS["in_flight"] -= 1

    def send(self, code, body=b"", ctype="application/json", headers=None):
        self.done()
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        url = urllib.parse.urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        key = self.headers.get("Idempotency-Key")
        if url.path in ("/log", "/stats", "/reset"):
            return self.control(url.path)
        with LOCK:
            LOG.append({"path": self.path, "method": self.command,
                        "idempotency_key": key,
                        "attempt": self.headers.get("X-Tasker-Attempt"),
                        "traceparent": self.headers.get("traceparent"),
                        "at": time.time()})
            STATS["requests"] += 1
            STATS["in_flight"] += 1
            STATS["max_in_flight"] = max(STATS["max_in_flight"], STATS["in_flight"])
        self.counted = True
        try:
            self.route(url, parts, raw, key)
        finally:
            self.done()

    def control(self, path):
        with LOCK:
            if path == "/log":
                body = list(LOG)
            elif path == "/stats":
                body = dict(STATS)
            else:
                LOG.clear()
                SEEN.clear()
                STATS.update(in_flight=STATS["in_flight"], max_in_flight=0, requests=0)
                body = {"reset": True}
        self.send(200, body)

    def route(self, url, parts, raw, key):
        head = parts[0] if parts else ""
        if head == "json":
            self.send(200, {"hello": "world", "n": 1, "nested": {"ok": True}})
        elif head == "text":
            self.send(200, "plain text", "text/plain; charset=utf-8")
        elif head == "echo":
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            self.send(200, {"method": self.command, "path": url.path,
                            "query": dict(urllib.parse.parse_qsl(url.query)),
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body})
        elif head == "status" and len(parts) > 1:
            code = int(parts[1])
            self.send(code, {"status": code, "message": "stub status %d" % code})
        elif head == "delay" and len(parts) > 1:
            time.sleep(float(parts[1]))
            self.send(200, {"slept": float(parts[1])})
        elif head == "big" and len(parts) > 1:
            self.send(200, b"x" * int(parts[1]), "text/plain")
        elif head == "flaky" and len(parts) > 3:
            self.flaky(int(parts[1]), parts[2], int(parts[3]), key)
        elif head == "redirect":
            to = dict(urllib.parse.parse_qsl(url.query)).get("to", "/json")
            self.send(302, {"redirect": to}, headers={"Location": to})
        else:
            self.send(404, {"error": "no such endpoint"})

    def flaky(self, code, mode, n, key):
        with LOCK:
            first = (key, self.path) not in SEEN
            SEEN.add((key, self.path))
        if not first:
            return self.send(200, {"ok": True, "after": code})
        if mode == "date":
            value = email.utils.formatdate(time.time() + n, usegmt=True)
        else:
            value = str(n)
        self.send(code, {"status": code}, headers={"Retry-After": value})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # a client that hung up (a killed worker) is not our problem


def main():
    # Hold no descriptor inherited from the caller (such as the lock that
    # test/lib.sh takes), so a stub left running blocks nobody.
    os.closerange(3, 1024)
    portfile = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    server = Server(("127.0.0.1", port), Handler)
    with open(portfile + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(portfile + ".tmp", portfile)
    server.serve_forever()


if __name__ == "__main__":
    main()
