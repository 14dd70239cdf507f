#!/usr/bin/env python3
"""The local OpenID Connect issuer of `make dev` and the test stack: a discovery document and a key
set (one ES256 key) on 127.0.0.1, nothing else. auth-refresh is configured with its URL as
OIDC_ISSUER exactly as it would be with Cognito or Auth0; nothing in the function knows it is local.

    oidc_issuer.py --key FILE --port PORT

The signing key is read from FILE, or generated and written there (mode 0600) when FILE does not
exist. FILE is {"kid": ..., "pkcs8": <base64url DER>}, the form `ops id-token` signs with and
tools/testkit's in-process issuer (oidc_issuer.rs) also writes. Runs until killed.
"""
import argparse
import base64
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def load_or_create(path):
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        der = base64.urlsafe_b64decode(doc["pkcs8"] + "=" * (-len(doc["pkcs8"]) % 4))
        return doc["kid"], serialization.load_der_private_key(der, password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"kid": "local-1", "pkcs8": b64url(der)}, f)
    return "local-1", key


def jwk(kid, key):
    numbers = key.public_key().public_numbers()
    return {"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": b64url(numbers.x.to_bytes(32, "big")), "y": b64url(numbers.y.to_bytes(32, "big"))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--key", required=True)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    kid, key = load_or_create(args.key)
    issuer = f"http://127.0.0.1:{args.port}"
    documents = {
        "/.well-known/openid-configuration": {
            "issuer": issuer, "jwks_uri": f"{issuer}/jwks.json", "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["ES256"],
        },
        "/jwks.json": {"keys": [jwk(kid, key)]},
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            doc = documents.get(self.path)
            body = json.dumps(doc if doc is not None else {"error": "not found"}).encode()
            self.send_response(200 if doc is not None else 404)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *a):
            pass

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
