#!/usr/bin/env python3
"""Runs the sample events through SAM's own local paths (scripts/sam-local.sh sets the stage).

    sam_local_run.py invoke --manifest events/manifest.json --gen-dir DIR [--bench FILE]
        every manifest entry through `sam local invoke <LogicalId> -e <event>`, one process each,
        as a user runs them: the expected statusCode, or for an SQS consumer the exact
        batchItemFailures ids, and no panic in the function's log. With --bench, writes the
        per-event durations (the `sam local invoke` process, and the function's own from
        Lambda's REPORT line) as a Markdown table.
    sam_local_run.py api --manifest events/manifest.json --gen-dir DIR --api-url URL --origin O
        the HTTP contract through `sam local start-api`: every event of a function the HTTP API
        routes to is sent as the HTTP request it describes (method, path, query, headers,
        cookies, body), so the template's routes, not the event's routeKey, pick the function.
        Preflights must be answered by the API layer from CorsConfiguration, as API Gateway does.

Prints `ok|FAIL ...` per event and a closing `N passed, M failed` line; exits 1 on any failure.
"""
import argparse
import base64
import concurrent.futures
import http.client
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse

# Lambda's REPORT line; Init Duration is not always there, and other log lines may share its line.
REPORT = re.compile(r"REPORT RequestId: \S+.*?(?<!Init )(?<!Billed )Duration: ([\d.]+) ms")


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def batch_problem(expected, answer):
    failures = answer.get("batchItemFailures") if isinstance(answer, dict) else None
    if not isinstance(failures, list):
        return "the response has no batchItemFailures list"
    got = sorted(f.get("itemIdentifier") for f in failures)
    if got != sorted(expected):
        return f"expected batchItemFailures {sorted(expected)}, got {got}"
    return None


def sam_local_status(entry):
    """The status the manifest expects here: `samLocalExpectStatus` where it says why SAM's
    containers see something else (`samLocalReason`), else `expectStatus`."""
    return entry.get("samLocalExpectStatus", entry.get("expectStatus"))


def judge(entry, answer, logs):
    """The reason an answer is wrong, or None."""
    if "panicked" in logs:
        return "the function logged a panic"
    if not isinstance(answer, dict):
        return "no JSON answer"
    if "errorType" in answer or "errorMessage" in answer:
        return f"function error: {answer.get('errorType')}: {answer.get('errorMessage')}"
    expected = sam_local_status(entry)
    if expected is not None and answer.get("statusCode") != expected:
        return f"expected status {expected}, got {answer.get('statusCode')}"
    if "expectBatchItemFailures" in entry:
        return batch_problem(entry["expectBatchItemFailures"], answer)
    return None


def report(ok, label, problem=None, extra=""):
    line = f"{'ok' if ok else 'FAIL'} {label}{extra}"
    if problem:
        line += f" ({problem})"
    print(line, flush=True)


def sam_invoke(gen, function, event):
    # The function first: --parameter-overrides takes every word after it.
    return ["sam", "local", "invoke", function, "--event", event, "--template", os.path.join(gen, "template.yaml"),
            "--env-vars", os.path.join(gen, "env-vars.json"), "--skip-pull-image",
            "--parameter-overrides", open(os.path.join(gen, "parameters"), encoding="utf-8").read().strip()]


def invoke_one(gen, logical, base, entry):
    """Runs one entry; returns (output lines, passed, bench row)."""
    started = time.monotonic()
    proc = subprocess.run(sam_invoke(gen, logical[entry["function"]], os.path.join(base, entry["event"])),
                          capture_output=True, text=True, timeout=180)
    wall_ms = (time.monotonic() - started) * 1000
    try:
        answer = json.loads(proc.stdout)
    except json.JSONDecodeError:
        answer = None
    problem = judge(entry, answer, proc.stderr)
    if proc.returncode != 0 and not problem:
        problem = f"sam local invoke exited {proc.returncode}"
    got = answer.get("statusCode", "none") if isinstance(answer, dict) else "-"
    line = (f"{'ok' if problem is None else 'FAIL'} {entry['function']} {entry['event']} "
            f"expected={sam_local_status(entry) or 'any'} got={got} ({wall_ms:.0f} ms)")
    lines = [line + (f" ({problem})" if problem else "")]
    if problem:
        lines.append("  " + proc.stderr[-3000:].replace("\n", "\n  "))
    match = REPORT.search(proc.stderr)
    return lines, problem is None, (entry["function"], entry["event"], wall_ms,
                                    float(match.group(1)) if match else None)


def run_invoke(args):
    """Each function's events in manifest order (they build on each other: create, then update);
    different functions side by side, --jobs at a time."""
    manifest = load(args.manifest)
    base = os.path.dirname(os.path.abspath(args.manifest))
    logical = load(os.path.join(args.gen_dir, "functions.json"))
    groups = {}
    for entry in manifest:
        groups.setdefault(entry["function"], []).append(entry)

    def run_group(entries):
        return [invoke_one(args.gen_dir, logical, base, entry) for entry in entries]

    jobs = 1 if args.bench else args.jobs
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(run_group, groups.values()))
    passed = failed = 0
    rows = []
    for group in results:
        for lines, ok, row in group:
            print("\n".join(lines), flush=True)
            passed, failed = (passed + 1, failed) if ok else (passed, failed + 1)
            rows.append(row)
    print(f"sam local invoke: {passed} passed, {failed} failed", flush=True)
    if args.bench:
        write_bench(args.bench, rows, args.binaries)
    return failed == 0


BENCH_HEADING = "## `sam local invoke`, per sample event"


def write_bench(path, rows, binaries):
    """Writes the section into `path`: replaces it if the file has it (up to the next `## `
    heading), appends it otherwise, creates the file if there is none."""
    walls = sorted(r[2] for r in rows)
    own = sorted(r[3] for r in rows if r[3] is not None)
    median = lambda xs: xs[len(xs) // 2] if xs else float("nan")  # noqa: E731
    lines = [
        BENCH_HEADING,
        "",
        f"Written by `scripts/sam-local.sh --bench {os.path.relpath(path)}` (`make bench` runs it on the release "
        f"bootstraps) on {time.strftime('%Y-%m-%d')}, with {binaries} x86_64 bootstraps. Each event is one "
        "`sam local invoke` process, one after the other, on Podman (a new container every time, SAM's "
        "Runtime Interface Emulator inside) against the local stack; the first column is that process "
        "from start to exit (SAM CLI's own start, the container's creation and start, the function's "
        "init and the invocation), the second the function's own `Duration` from Lambda's REPORT line. "
        "The gap is SAM and the container, not the function. A dash: SAM had the answer and stopped "
        "the container before the emulator's REPORT line reached its log (it does not wait for it).",
        "",
        "| function | event | `sam local invoke` (ms) | function's own Duration (ms) |",
        "| --- | --- | ---: | ---: |",
    ]
    for function, event, wall, duration in rows:
        lines.append(f"| {function} | {event} | {wall:.0f} | {'-' if duration is None else f'{duration:.1f}'} |")
    lines += ["", f"{len(rows)} events: `sam local invoke` median {median(walls):.0f} ms (min {walls[0]:.0f}, "
                  f"max {walls[-1]:.0f}); the function's own Duration median {median(own):.1f} ms "
                  f"(max {own[-1]:.1f}).", ""]
    section = "\n".join(lines)
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
    if BENCH_HEADING in text:
        head, rest = text.split(BENCH_HEADING, 1)
        nxt = rest.find("\n## ")
        text = head + section + (rest[nxt + 1:] if nxt >= 0 else "")
    else:
        text = (text.rstrip("\n") + "\n\n" if text else "") + section
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def http_request(api, event):
    """(method, path?query, headers, body bytes) of the HTTP request an API Gateway v2 event describes."""
    method = event["requestContext"]["http"]["method"]
    target = event.get("rawPath") or "/"
    if event.get("rawQueryString"):
        target += "?" + event["rawQueryString"]
    headers = {k: v for k, v in (event.get("headers") or {}).items()
               if k.lower() not in ("host", "content-length", "x-forwarded-for", "x-forwarded-proto")}
    if event.get("cookies"):
        headers["cookie"] = "; ".join(event["cookies"])
    body = event.get("body")
    if body is None:
        data = b""
    elif event.get("isBase64Encoded"):
        data = base64.b64decode(body)
    else:
        data = body.encode()
    return method, target, headers, data


def send(api, method, target, headers, data):
    url = urllib.parse.urlsplit(api)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        conn.request(method, target, body=data or None, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def run_api(args):
    manifest = load(args.manifest)
    base = os.path.dirname(os.path.abspath(args.manifest))
    routed = set(load(os.path.join(args.gen_dir, "http-functions.json")))
    cors = load(os.path.join(args.gen_dir, "cors.json"))
    passed = failed = skipped = 0

    def tally(ok, label, problem=None, extra=""):
        nonlocal passed, failed
        report(ok, label, problem, extra)
        if ok:
            passed += 1
        else:
            failed += 1

    for entry in manifest:
        if entry["function"] not in routed:
            continue
        event = load(os.path.join(base, entry["event"]))
        method, target, headers, data = http_request(args.api_url, event)
        if "%2f" in target.lower():
            # SAM's local API (werkzeug) decodes %2F before routing, so /posts/..%2Fetc matches no
            # route there; API Gateway routes it to GET /posts/{id}. `sam local invoke` covers it.
            print(f"skip {entry['function']} {method} {target} ({entry['event']}): "
                  "sam local start-api decodes %2F before routing", flush=True)
            skipped += 1
            continue
        names = [c.split("=", 1)[0] for c in event.get("cookies") or []]
        if len(names) != len(set(names)):
            # SAM's local API rebuilds the event's `cookies` from a parsed cookie jar, which keeps one
            # value per name; API Gateway passes every cookie on. `sam local invoke` covers it.
            print(f"skip {entry['function']} {method} {target} ({entry['event']}): "
                  "sam local start-api keeps one cookie per name", flush=True)
            skipped += 1
            continue
        status, got_headers, body = send(args.api_url, method, target, headers, data)
        label = f"{entry['function']} {method} {target.split('?')[0]} ({entry['event']})"
        if method == "OPTIONS":
            # Answered by the API layer, never the function: the configured methods and headers.
            problem = preflight_problem(cors, headers.get("origin"), status, got_headers)
            tally(problem is None, label, problem, f" got={status}")
            continue
        expected = sam_local_status(entry)
        problem = None if expected is None or status == expected else f"expected status {expected}, got {status}"
        tally(problem is None, label, problem, f" expected={expected} got={status}")
        if problem:
            print("  " + body[:500].decode(errors="replace"))

    # A preflight for a route whose function has no OPTIONS handling of its own, from the allowed
    # origin and from another one.
    for origin, allowed in ((args.origin, True), ("https://not-allowed.example", False)):
        status, got_headers, _ = send(args.api_url, "OPTIONS", "/posts", {
            "origin": origin, "access-control-request-method": "POST",
            "access-control-request-headers": "authorization,content-type"}, b"")
        problem = preflight_problem(cors, origin if allowed else None, status, got_headers)
        tally(problem is None, f"api OPTIONS /posts from {'an allowed' if allowed else 'another'} origin", problem,
              f" got={status}")
    # Not in the route table: the API answers, no function does.
    status, _, _ = send(args.api_url, "GET", "/not-a-route", {}, b"")
    tally(status in (403, 404), "api GET /not-a-route", None if status in (403, 404) else f"got {status}",
          f" got={status}")
    print(f"sam local start-api: {passed} passed, {failed} failed, {skipped} skipped", flush=True)
    return failed == 0


def preflight_problem(cors, origin, status, headers):
    if status not in (200, 204):
        return f"preflight answered {status}"
    allow_origin = headers.get("access-control-allow-origin")
    if origin is None:
        return None if allow_origin is None else f"a foreign origin was allowed: {allow_origin}"
    if allow_origin != origin:
        return f"access-control-allow-origin {allow_origin!r}, expected {origin!r}"
    methods = headers.get("access-control-allow-methods", "")
    if sorted(m.strip() for m in methods.split(",")) != sorted(cors["AllowMethods"]):
        return f"access-control-allow-methods {methods!r} is not CorsConfiguration's {cors['AllowMethods']}"
    allow_headers = headers.get("access-control-allow-headers", "")
    if sorted(h.strip() for h in allow_headers.split(",")) != sorted(cors["AllowHeaders"]):
        return f"access-control-allow-headers {allow_headers!r} is not CorsConfiguration's {cors['AllowHeaders']}"
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    inv = sub.add_parser("invoke")
    inv.add_argument("--manifest", required=True)
    inv.add_argument("--gen-dir", required=True)
    inv.add_argument("--bench", help="write the durations section into this Markdown file")
    inv.add_argument("--binaries", default="debug", help="what the bootstraps are, for the --bench text")
    inv.add_argument("--jobs", type=int, default=3, help="functions run side by side (1 with --bench)")
    api = sub.add_parser("api")
    api.add_argument("--manifest", required=True)
    api.add_argument("--gen-dir", required=True)
    api.add_argument("--api-url", required=True)
    api.add_argument("--origin", required=True)
    args = ap.parse_args()
    ok = run_invoke(args) if args.mode == "invoke" else run_api(args)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
