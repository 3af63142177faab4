#!/usr/bin/env python3
"""A DPoP client (RFC 9449) for Tessera, written without any of Tessera's code.

    python3 scripts/dpop-client.py [--base URL] [--api-key KEY] [--key PEM]
                                   [--subject NAME] [--route-url URL]

It plays two parts that are usually separate programs:

- your login backend, which creates the session with the API key and asks
  for tokens bound to the client's key (`"tokens": {"dpop_jkt": …}`), and
- the client (a mobile or single-page app) that holds that key and proves
  possession of it on every request.

Steps:

1. make an EC P-256 key (or load a PKCS#8 PEM one with `--key`) and compute
   its RFC 7638 JWK thumbprint;
2. `POST /v1/sessions` with `tokens.dpop_jkt` = the thumbprint: the answer
   must be `token_type: DPoP` and an access token whose `cnf.jkt` is the
   thumbprint;
3. `POST <token_endpoint>` (from `/.well-known/oauth-authorization-server`)
   with the refresh token and a `DPoP` proof; when the server asks for a
   nonce (400 `use_dpop_nonce` + `DPoP-Nonce`), retry once with it;
4. call a protected route through forward auth, as a reverse proxy would:
   `GET /auth/verify` with `Authorization: DPoP <access token>`, a proof for
   the proxied request (`--route-url`) and nginx's `X-Original-Method` /
   `X-Original-URL`: 200 and `X-Tessera-Subject`;
5. play the thief: the same access token with a proof signed by another key,
   and the same token sent as `Bearer`: both must be 401.

The API key comes from `--api-key` or the TESSERA_API_KEY environment
variable (the bootstrap key is in `<data dir>/bootstrap-api-key`). Tokens
are never printed. Exits 0 when every expectation holds, 1 otherwise (2 for
bad usage, 3 when PyJWT or `cryptography` is missing: run ./scripts/test,
which installs them).
"""

import argparse
import base64
import hashlib
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

try:
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
except ImportError as e:  # pragma: no cover - environment problem
    print(
        f"missing Python package ({e}); run ./scripts/test or "
        "python3 -m pip install 'PyJWT[crypto]>=2.8'",
        file=sys.stderr,
    )
    sys.exit(3)


class Failed(Exception):
    """An expectation did not hold."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# ------------------------------------------------------------------ the key


class DpopKey:
    """An EC P-256 key pair that signs DPoP proofs (ES256)."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey):
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise Failed(f"the key must be EC P-256, not {private_key.curve.name}")
        self.private_key = private_key
        numbers = private_key.public_key().public_numbers()
        # RFC 7518 §6.2.1: x and y are the full 32-byte big-endian coordinates.
        self.jwk = {
            "kty": "EC",
            "crv": "P-256",
            "x": b64url(numbers.x.to_bytes(32, "big")),
            "y": b64url(numbers.y.to_bytes(32, "big")),
        }

    @classmethod
    def generate(cls) -> "DpopKey":
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def load(cls, path: str) -> "DpopKey":
        try:
            with open(path, "rb") as f:
                key = serialization.load_pem_private_key(f.read(), password=None)
        except (OSError, ValueError, TypeError) as e:
            raise Failed(f"{path}: cannot load an unencrypted PEM private key ({e})")
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise Failed(f"{path}: not an EC private key")
        return cls(key)

    def thumbprint(self) -> str:
        """RFC 7638: SHA-256 over the required members in lexicographic
        order, no whitespace; base64url without padding."""
        canonical = '{{"crv":"{crv}","kty":"{kty}","x":"{x}","y":"{y}"}}'.format(**self.jwk)
        return b64url(hashlib.sha256(canonical.encode("ascii")).digest())

    def proof(self, method: str, url: str, access_token=None, nonce=None) -> str:
        """A DPoP proof JWT (RFC 9449 §4.2) for one request."""
        claims = {
            "jti": secrets.token_urlsafe(16),
            "htm": method,
            # §4.2: the URI without query and fragment.
            "htu": url.split("?", 1)[0].split("#", 1)[0],
            "iat": int(time.time()),
        }
        if access_token is not None:
            claims["ath"] = b64url(hashlib.sha256(access_token.encode("ascii")).digest())
        if nonce is not None:
            claims["nonce"] = nonce
        return jwt.encode(
            claims,
            self.private_key,
            algorithm="ES256",
            headers={"typ": "dpop+jwt", "jwk": self.jwk},
        )


# --------------------------------------------------------------------- HTTP

# No proxies from the environment: the requests go straight to --base.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Answer:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            raise Failed(f"expected JSON, got {self.status}: {self.body[:300]!r}")

    def header(self, name):
        return self.headers.get(name)


def http(method, url, headers=None, body=None) -> Answer:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with OPENER.open(req, timeout=15) as r:
            return Answer(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return Answer(e.code, e.headers, e.read())
    except urllib.error.URLError as e:
        raise Failed(f"{method} {url}: {e.reason}")


def unverified_claims(token: str) -> dict:
    # Only to show what the token says: the client is not its audience, the
    # resource server (here /auth/verify) is the one that verifies it.
    return jwt.decode(token, options={"verify_signature": False})


def expect(cond: bool, what: str):
    if not cond:
        raise Failed(what)


# -------------------------------------------------------------------- steps


def create_session(base, api_key, subject, key) -> dict:
    body = json.dumps({"subject": subject, "tokens": {"dpop_jkt": key.thumbprint()}})
    r = http(
        "POST",
        f"{base}/v1/sessions",
        {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
        body.encode(),
    )
    expect(r.status == 201, f"POST /v1/sessions: expected 201, got {r.status}: {r.body[:300]!r}")
    return r.json()


def refresh(token_endpoint, refresh_token, key):
    """The refresh grant with a proof; one retry when the server asks for a
    nonce. Returns (answer JSON, whether a nonce was needed)."""
    form = urllib.parse.urlencode(
        {"grant_type": "refresh_token", "refresh_token": refresh_token}
    ).encode()
    nonce = None
    for attempt in (1, 2):
        r = http(
            "POST",
            token_endpoint,
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "DPoP": key.proof("POST", token_endpoint, nonce=nonce),
            },
            form,
        )
        if r.status == 400 and attempt == 1 and r.json().get("error") == "use_dpop_nonce":
            nonce = r.header("DPoP-Nonce")
            expect(bool(nonce), "use_dpop_nonce without a DPoP-Nonce header")
            continue
        expect(r.status == 200, f"token endpoint: expected 200, got {r.status}: {r.body[:300]!r}")
        return r.json(), nonce is not None
    raise Failed("token endpoint asked for a nonce twice")


def forward_auth(base, route_url, scheme, access_token, key):
    """`GET /auth/verify` as nginx's auth_request sends it for `GET route_url`.
    `key` None sends no proof. One retry when a resource nonce is asked for
    (401 `use_dpop_nonce` + `DPoP-Nonce`). Returns (answer, whether a nonce
    was needed)."""
    nonce = None
    for attempt in (1, 2):
        headers = {
            "Authorization": f"{scheme} {access_token}",
            "X-Original-Method": "GET",
            "X-Original-URL": route_url,
        }
        if key is not None:
            headers["DPoP"] = key.proof("GET", route_url, access_token, nonce)
        r = http("GET", f"{base}/auth/verify", headers)
        challenge = r.header("WWW-Authenticate") or ""
        if (
            r.status == 401
            and attempt == 1
            and key is not None
            and 'error="use_dpop_nonce"' in challenge
            and r.header("DPoP-Nonce")
        ):
            nonce = r.header("DPoP-Nonce")
            continue
        return r, nonce is not None
    return r, True


def run(args) -> None:
    base = args.base.rstrip("/")
    key = DpopKey.load(args.key) if args.key else DpopKey.generate()
    jkt = key.thumbprint()
    print(f"key: EC P-256 ({'from ' + args.key if args.key else 'new, in memory'})")
    print(f"jkt: {jkt}")

    meta = http("GET", f"{base}/.well-known/oauth-authorization-server")
    expect(meta.status == 200, f"metadata: {meta.status}")
    meta = meta.json()
    token_endpoint = meta["token_endpoint"]
    algs = meta.get("dpop_signing_alg_values_supported", [])
    expect("ES256" in algs, f"server does not accept ES256 proofs: {algs}")
    print(f"token endpoint: {token_endpoint} (proof algs {' '.join(algs)})")

    created = create_session(base, args.api_key, args.subject, key)
    expect(created.get("token_type") == "DPoP", f"token_type {created.get('token_type')!r}, not DPoP")
    cnf = unverified_claims(created["access_token"]).get("cnf", {})
    expect(cnf.get("jkt") == jkt, f"access token cnf {cnf}, not our thumbprint")
    expect(bool(created.get("refresh_token")), "no refresh_token")
    print(f"session: {created['session']['handle']} token_type=DPoP cnf.jkt matches")

    tokens, needed_nonce = refresh(token_endpoint, created["refresh_token"], key)
    expect(tokens.get("token_type") == "DPoP", f"refreshed token_type {tokens.get('token_type')!r}")
    access = tokens["access_token"]
    claims = unverified_claims(access)
    expect(claims.get("cnf", {}).get("jkt") == jkt, f"refreshed cnf {claims.get('cnf')}")
    expect(tokens.get("refresh_token") not in (None, created["refresh_token"]), "refresh token not rotated")
    print(
        f"refresh: token_type=DPoP cnf.jkt matches, refresh token rotated, "
        f"nonce {'required and sent' if needed_nonce else 'not required'}"
    )

    r, needed_nonce = forward_auth(base, args.route_url, "DPoP", access, key)
    expect(r.status == 200, f"/auth/verify with our proof: {r.status} {r.header('WWW-Authenticate')}")
    subject = r.header("X-Tessera-Subject")
    expect(subject == args.subject, f"X-Tessera-Subject {subject!r}")
    print(
        f"route GET {args.route_url}: 200, "
        f"nonce {'required and sent' if needed_nonce else 'not required'}, subject: {subject}"
    )

    # A thief who copied the access token but not the private key.
    r, _ = forward_auth(base, args.route_url, "DPoP", access, DpopKey.generate())
    expect(r.status == 401, f"stolen token with another key's proof: {r.status}, not 401")
    print(f"stolen token + proof from another key: 401 ({r.header('WWW-Authenticate')})")
    r, _ = forward_auth(base, args.route_url, "Bearer", access, None)
    expect(r.status == 401, f"stolen token as Bearer: {r.status}, not 401")
    print(f"stolen token as Bearer: 401 ({r.header('WWW-Authenticate')})")
    print("OK: the token works only with the key it is bound to")


def main() -> int:
    p = argparse.ArgumentParser(
        description="Get a DPoP-bound token from Tessera and use it (RFC 9449).",
    )
    p.add_argument("--base", default="http://127.0.0.1:8080", help="the service's URL")
    p.add_argument("--api-key", default=os.environ.get("TESSERA_API_KEY"),
                   help="backend API key (default: $TESSERA_API_KEY)")
    p.add_argument("--key", help="PKCS#8 PEM file with an EC P-256 private key (default: a new key)")
    p.add_argument("--subject", default="alice", help="the session's subject")
    p.add_argument("--route-url", default="https://app.example/orders",
                   help="the URL of the protected route behind the proxy")
    args = p.parse_args()
    if not args.api_key:
        p.error("no API key: give --api-key or set TESSERA_API_KEY")
    try:
        run(args)
    except Failed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    except (KeyError, TypeError, AttributeError) as e:
        print(f"FAILED: unexpected answer from the service ({type(e).__name__}: {e})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
