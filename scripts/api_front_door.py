#!/usr/bin/env python3
"""The local stand-in for API Gateway's CORS layer, in front of whatever serves the functions
(`cargo lambda watch` in `make dev`, a test's HTTP server in the browser test).

    api_front_door.py --port 9000 --upstream http://127.0.0.1:9001 --origins http://localhost:5173

With CorsConfiguration set on an HTTP API, API Gateway decides CORS, not the functions: it answers
every preflight itself (no function is invoked, whatever the routes) and it replaces the CORS
headers of every response with the configured ones. This does the same, with the HttpApi's
CorsConfiguration read from template.yaml and --origins standing for the AllowedOrigins parameter:
  - OPTIONS with Origin and Access-Control-Request-Method: 204, and from an allowed origin the
    configured Allow-Origin (that origin), Allow-Methods, Allow-Headers, Allow-Credentials, Max-Age;
    from any other origin no CORS header at all (the browser then refuses the request);
  - anything else goes to --upstream unchanged; the answer's Access-Control-* headers are dropped
    and, for an allowed Origin, Allow-Origin, Allow-Credentials and Expose-Headers are set.
Listens on 127.0.0.1 only. Stops on SIGTERM (by PID, by whoever started it).
"""
import argparse
import http.client
import http.server
import os
import signal
import sys
import threading
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from provision import load_template  # noqa: E402

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"}


def cors_configuration(template_path):
    template = load_template(template_path)
    for res in template["Resources"].values():
        if res.get("Type") == "AWS::Serverless::HttpApi":
            cors = res.get("Properties", {}).get("CorsConfiguration")
            if cors:
                return cors
    raise SystemExit(f"api_front_door: {template_path} has no HttpApi CorsConfiguration")


class Cors:
    def __init__(self, config, origins):
        self.origins = origins
        self.methods = ",".join(config.get("AllowMethods", []))
        self.headers = ",".join(config.get("AllowHeaders", []))
        self.expose = ",".join(config.get("ExposeHeaders", []))
        self.max_age = str(config["MaxAge"]) if "MaxAge" in config else None
        self.credentials = bool(config.get("AllowCredentials"))

    def allowed(self, origin):
        return origin if origin and origin in self.origins else None

    def preflight_headers(self, origin):
        origin = self.allowed(origin)
        if origin is None:
            return []
        headers = [("Access-Control-Allow-Origin", origin), ("Access-Control-Allow-Methods", self.methods),
                   ("Access-Control-Allow-Headers", self.headers)]
        if self.credentials:
            headers.append(("Access-Control-Allow-Credentials", "true"))
        if self.max_age:
            headers.append(("Access-Control-Max-Age", self.max_age))
        return headers

    def response_headers(self, origin):
        origin = self.allowed(origin)
        if origin is None:
            return []
        headers = [("Access-Control-Allow-Origin", origin)]
        if self.credentials:
            headers.append(("Access-Control-Allow-Credentials", "true"))
        if self.expose:
            headers.append(("Access-Control-Expose-Headers", self.expose))
        return headers


def make_handler(cors, upstream):
    up = urllib.parse.urlsplit(upstream)

    class FrontDoor(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # one line per request, on stderr
            sys.stderr.write("api_front_door: " + (fmt % args) + "\n")

        def answer(self, status, headers, body=b""):
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body and self.command != "HEAD":
                self.wfile.write(body)

        def handle_any(self):
            origin = self.headers.get("Origin")
            if self.command == "OPTIONS" and origin and self.headers.get("Access-Control-Request-Method"):
                self.answer(204, cors.preflight_headers(origin))
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                kept = [(k, v) for k, v in resp.getheaders()
                        if k.lower() not in HOP_BY_HOP and k.lower() not in ("content-length", "server", "date")
                        and not k.lower().startswith("access-control-")]
                self.answer(resp.status, kept + cors.response_headers(origin), data)
            except OSError as e:
                self.answer(502, [("Content-Type", "application/json")],
                            b'{"message":"Bad Gateway: ' + str(e).encode()[:200] + b'"}')
            finally:
                conn.close()

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = handle_any

    return FrontDoor


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--template", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                       "template.yaml"))
    ap.add_argument("--port", type=int, required=True, help="where to listen (127.0.0.1)")
    ap.add_argument("--upstream", required=True, help="what serves the functions, e.g. http://127.0.0.1:9001")
    ap.add_argument("--origins", required=True, help="comma-separated allowed origins (AllowedOrigins)")
    args = ap.parse_args()
    cors = Cors(cors_configuration(args.template), [o.strip() for o in args.origins.split(",") if o.strip()])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(cors, args.upstream))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"api_front_door: 127.0.0.1:{args.port} -> {args.upstream}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
