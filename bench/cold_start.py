"""Cold start of each Lambda binary against a stand-in for the Lambda Runtime API (not a test).

    python3 bench/cold_start.py ROUNDS NAME=BINARY [NAME=BINARY ...]

Each run starts the binary as Lambda would (`AWS_LAMBDA_RUNTIME_API` and the function's
variables set), and the stand-in serves the runtime API's `invocation/next` on 127.0.0.1:

- ready: process start (just before the exec) → the binary's first `GET …/invocation/next`,
  i.e. its configuration read, its clients built, its runtime up and asking for an event.
- answered (`sluice-api` only): the first event is an API Gateway v2 `GET /health`; process
  start → its `POST …/response`, checked to be a 200.

The binaries are exec'd once before the timed runs, so the page cache holds them (on AWS the
first start also reads the package from Lambda's cache; that is not ours to measure). Each
binary runs ROUNDS times in alternating order; the output is one JSON line per run.
"""
import http.server
import json
import os
import subprocess
import sys
import threading
import time

HEALTH_EVENT = {
    "version": "2.0",
    "routeKey": "$default",
    "rawPath": "/health",
    "rawQueryString": "",
    "headers": {"host": "api.example.com"},
    "requestContext": {
        "accountId": "123456789012",
        "apiId": "api",
        "domainName": "api.example.com",
        "domainPrefix": "api",
        "http": {"method": "GET", "path": "/health", "protocol": "HTTP/1.1",
                 "sourceIp": "127.0.0.1", "userAgent": "bench"},
        "requestId": "bench",
        "routeKey": "$default",
        "stage": "$default",
        "time": "02/Dec/2026:00:00:00 +0000",
        "timeEpoch": 1796169600000,
    },
    "isBase64Encoded": False,
}


class Run:
    """What one run saw: when the first poll and the first answer arrived."""

    def __init__(self, event):
        self.event = event
        self.answers = event is not None
        self.ready = None
        self.answered = None
        self.status = None
        self.done = threading.Event()


class Runtime(http.server.ThreadingHTTPServer):
    daemon_threads = True
    run = None


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        run = self.server.run
        if not self.path.endswith("/runtime/invocation/next"):
            return self.reply(404, b"{}")
        now = time.perf_counter()
        if run.ready is None:
            run.ready = now
        if run.event is None:
            if not run.answers:
                run.done.set()
            # Lambda holds the poll open until an event comes; the run ends here.
            time.sleep(30)
            return
        body = json.dumps(run.event).encode()
        deadline = int(time.time() * 1000) + 30_000
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Lambda-Runtime-Aws-Request-Id", "8476a536-e9f4-11e8-9739-2dfe598c3fcd")
        self.send_header("Lambda-Runtime-Deadline-Ms", str(deadline))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn",
                         "arn:aws:lambda:us-east-1:123456789012:function:bench")
        self.send_header("Lambda-Runtime-Trace-Id", "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        run.event = None

    def do_POST(self):
        run = self.server.run
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.endswith("/response"):
            run.answered = time.perf_counter()
            run.status = json.loads(body).get("statusCode")
        else:
            run.status = f"{self.path}: {body[:300]!r}"
        run.done.set()
        self.reply(202, b'{"status":"OK"}')

    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def one(server, name, binary, timed=True):
    event = HEALTH_EVENT if name == "sluice-api" else None
    run = server.run = Run(event)
    env = dict(os.environ,
               AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_address[1]}",
               AWS_LAMBDA_FUNCTION_NAME=name, AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
               AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256", AWS_LAMBDA_LOG_GROUP_NAME=f"/aws/lambda/{name}",
               AWS_LAMBDA_LOG_STREAM_NAME="bench", _HANDLER="bootstrap")
    t0 = time.perf_counter()
    p = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if not run.done.wait(30):
            sys.exit(f"{name}: no poll in 30 s: {p.stderr.read1(2000)!r}" if p.poll() is not None
                     else f"{name}: no poll in 30 s")
    finally:
        p.kill()
        err = p.communicate()[1]
    if run.ready is None or (event is not None and run.status != 200):
        sys.exit(f"{name}: {run.status!r}; stderr: {err[-2000:]!r}")
    if timed:
        out = {"binary": name, "ready_ms": round((run.ready - t0) * 1000, 2)}
        if run.answered is not None:
            out["answered_ms"] = round((run.answered - t0) * 1000, 2)
        print(json.dumps(out), flush=True)


def main():
    rounds = int(sys.argv[1])
    binaries = [a.split("=", 1) for a in sys.argv[2:]]
    server = Runtime(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for name, binary in binaries:
        one(server, name, binary, timed=False)
    for r in range(rounds):
        order = binaries if r % 2 == 0 else binaries[::-1]
        for name, binary in order:
            one(server, name, binary)


if __name__ == "__main__":
    main()
