#!/usr/bin/env python3
"""An OAuth 2.0 service client for Tessera, written without any of Tessera's code.

    python3 scripts/oauth-client.py keygen --out KEY.pem
    python3 scripts/oauth-client.py client-credentials --base URL --client-id ID
                                    --key KEY.pem [--scope S] [--audience AUD]
    python3 scripts/oauth-client.py token-exchange --base URL --client-id ID
                                    --key KEY.pem --subject-token-file FILE
                                    --audience AUD [--scope S] [--resource URI]

`keygen` makes an EC P-256 key, writes it (PKCS#8 PEM) to `--out` and prints
its public JWK Set on stdout: what goes in the client's `[[clients]]` entry
as `jwks` (or in `tessera clients create ID --jwks FILE`).

`client-credentials` plays a backend service that holds that key
(`private_key_jwt`, RFC 7523 §2.2, with no shared secret):

1. reads `/.well-known/oauth-authorization-server` (RFC 8414) and checks it
   offers `client_credentials` and `private_key_jwt`;
2. `POST <token_endpoint>` with `grant_type=client_credentials` and a
   client assertion (`iss` = `sub` = the client id, `aud` = the token
   endpoint, `exp` in 60 s, a fresh `jti`): the answer must be an access
   token and no refresh token;
3. `POST <introspection_endpoint>` about that token, authenticated with a
   new assertion: `active: true`, `sub` and `client_id` = the client id;
4. replays the assertion of step 2: it must be refused with 401
   `invalid_client` (its `jti` is single-use).

`token-exchange` plays a service that received a user's access token (read
from `--subject-token-file`) and needs a narrower one for the next service
(RFC 8693), authenticating with the same kind of assertion:

1. reads the metadata and checks it offers the token-exchange grant;
2. its own `client_credentials` token first (the service's identity);
3. trades the user's token for one with `--scope` (a subset) for the single
   downstream `--audience`: the answer must carry `issued_token_type`, no
   refresh token, the user's `sub`, `aud` = that audience only, `act.sub` =
   this client, a scope within the original, and an `exp` no later than the
   original's; introspection says it is active, with the same `act`;
4. with `--resource`, trades it for one whose `aud` is that resource
   (RFC 8707);
5. the refusals: a wider scope → `invalid_scope`; two audiences, an
   unregistered resource → `invalid_target`; a token that is not an access
   token of this issuer → `invalid_grant`; no client authentication → 401
   `invalid_client`.

Each flow is one function (`client_credentials`, `token_exchange`,
`introspect`, ...). Tokens are never
printed. Exits 0 when every expectation holds, 1 otherwise (2 for bad
usage, 3 when PyJWT or `cryptography` is missing: run ./scripts/test, which
installs them).
"""

import argparse
import base64
import hashlib
import json
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

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class Failed(Exception):
    """An expectation did not hold."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# ---------------------------------------------------------------- keys


def new_key():
    return ec.generate_private_key(ec.SECP256R1())


def load_key(path):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def public_jwk(key, kid):
    nums = key.public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(nums.x.to_bytes(32, "big")),
        "y": b64url(nums.y.to_bytes(32, "big")),
        "kid": kid,
        "alg": "ES256",
        "use": "sig",
    }


def kid_of(key):
    """The key's id: its RFC 7638 thumbprint (any stable name would do)."""
    jwk = public_jwk(key, "")
    canonical = json.dumps(
        {"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"], "y": jwk["y"]},
        separators=(",", ":"),
        sort_keys=True,
    )
    return b64url(hashlib.sha256(canonical.encode()).digest())


# ---------------------------------------------------------------- HTTP


def http(method, url, form=None):
    """(status, JSON body or {}) of one request; never raises on 4xx/5xx."""
    # `form` is a dict or a list of pairs (a parameter given more than once).
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    req.add_header("Accept", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            status, raw = res.status, res.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        body = {}
    return status, body


def discover(base):
    """RFC 8414 metadata, checked for what this client needs."""
    status, meta = http("GET", base.rstrip("/") + "/.well-known/oauth-authorization-server")
    if status != 200:
        raise Failed(f"metadata: HTTP {status}")
    if "client_credentials" not in meta.get("grant_types_supported", []):
        raise Failed("metadata: client_credentials is not offered")
    if "private_key_jwt" not in meta.get("token_endpoint_auth_methods_supported", []):
        raise Failed("metadata: private_key_jwt is not offered")
    if "ES256" not in meta.get("token_endpoint_auth_signing_alg_values_supported", []):
        raise Failed("metadata: ES256 assertions are not offered")
    return meta


# ---------------------------------------------------------------- flows


def client_assertion(key, client_id, audience):
    """A fresh RFC 7523 client assertion, valid for 60 seconds."""
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": now,
        "exp": now + 60,
        "jti": secrets.token_urlsafe(24),
    }
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid_of(key)})


def authenticated(form, assertion):
    """`form` plus private_key_jwt client authentication."""
    return dict(form, client_assertion_type=ASSERTION_TYPE, client_assertion=assertion)


def client_credentials(meta, key, client_id, scope=None, audience=None, assertion=None):
    """grant_type=client_credentials; returns (status, body, assertion used)."""
    assertion = assertion or client_assertion(key, client_id, meta["token_endpoint"])
    form = {"grant_type": "client_credentials"}
    if scope:
        form["scope"] = scope
    if audience:
        form["audience"] = audience
    status, body = http("POST", meta["token_endpoint"], authenticated(form, assertion))
    return status, body, assertion


TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


def token_exchange(meta, key, client_id, subject_token, audiences=(), resources=(), scope=None, auth=True):
    """RFC 8693 token exchange; `audiences` and `resources` may each repeat.
    Returns (status, body)."""
    form = [
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", subject_token),
        ("subject_token_type", ACCESS_TOKEN_TYPE),
    ]
    form += [("audience", a) for a in audiences]
    form += [("resource", r) for r in resources]
    if scope:
        form.append(("scope", scope))
    if auth:
        assertion = client_assertion(key, client_id, meta["token_endpoint"])
        form += [("client_assertion_type", ASSERTION_TYPE), ("client_assertion", assertion)]
    return http("POST", meta["token_endpoint"], form)


def unverified(token):
    """The claims of a JWT, read without checking it (the service checks)."""
    return jwt.decode(token, options={"verify_signature": False})


def introspect(meta, key, client_id, token):
    """RFC 7662 introspection, authenticated with a new assertion."""
    # `aud` may be the issuer as well as the token endpoint.
    assertion = client_assertion(key, client_id, meta["issuer"])
    return http(
        "POST",
        meta["introspection_endpoint"],
        authenticated({"token": token, "token_type_hint": "access_token"}, assertion),
    )


# ---------------------------------------------------------------- commands


def cmd_keygen(args):
    key = new_key()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with open(args.out, "wb") as f:
        f.write(pem)
    print(json.dumps({"keys": [public_jwk(key, kid_of(key))]}))


def cmd_client_credentials(args):
    key = load_key(args.key)
    meta = discover(args.base)
    print(f"issuer: {meta['issuer']}")

    status, body, used = client_credentials(meta, key, args.client_id, args.scope, args.audience)
    if status != 200:
        raise Failed(f"client_credentials: HTTP {status} {body}")
    if "refresh_token" in body:
        raise Failed("client_credentials: a refresh token was issued")
    token = body.get("access_token", "")
    claims = jwt.decode(token, options={"verify_signature": False})
    if claims.get("sub") != args.client_id or claims.get("client_id") != args.client_id:
        raise Failed(f"client_credentials: sub/client_id {claims.get('sub')}/{claims.get('client_id')}")
    if "sid" in claims:
        raise Failed("client_credentials: the token names a session")
    print(
        f"token: token_type={body.get('token_type')} expires_in={body.get('expires_in')} "
        f"scope={body.get('scope', '')} aud={claims.get('aud')} refresh_token=none"
    )

    status, info = introspect(meta, key, args.client_id, token)
    if status != 200 or info.get("active") is not True:
        raise Failed(f"introspection: HTTP {status} {info}")
    if info.get("sub") != args.client_id or info.get("client_id") != args.client_id:
        raise Failed(f"introspection: {info}")
    print(f"introspection: active=true sub={info['sub']} client_id={info['client_id']}")

    status, body, _ = client_credentials(meta, key, args.client_id, args.scope, args.audience, used)
    if status != 401 or body.get("error") != "invalid_client":
        raise Failed(f"replayed assertion: HTTP {status} {body} (expected 401 invalid_client)")
    print(f"replayed assertion: {status} {body['error']}")
    print("OK: client_credentials with private_key_jwt, introspection, replay refused")


def expect_error(what, status, body, want_status, want_error):
    if status != want_status or body.get("error") != want_error:
        raise Failed(f"{what}: HTTP {status} {body} (expected {want_status} {want_error})")
    print(f"{what}: {status} {want_error}")


def cmd_token_exchange(args):
    key = load_key(args.key)
    meta = discover(args.base)
    if TOKEN_EXCHANGE not in meta.get("grant_types_supported", []):
        raise Failed("metadata: token exchange is not offered")
    with open(args.subject_token_file) as f:
        subject_token = f.read().strip()
    original = unverified(subject_token)
    granted = set(original.get("scope", "").split())
    print(f"subject token: sub={original.get('sub')} scope={original.get('scope', '')}")

    # The service's own identity first: client_credentials.
    status, body, _ = client_credentials(meta, key, args.client_id, audience=args.audience)
    if status != 200:
        raise Failed(f"client_credentials: HTTP {status} {body}")
    print(f"own token: sub={unverified(body['access_token']).get('sub')}")

    status, body = token_exchange(meta, key, args.client_id, subject_token, [args.audience], scope=args.scope)
    if status != 200:
        raise Failed(f"token exchange: HTTP {status} {body}")
    if body.get("issued_token_type") != ACCESS_TOKEN_TYPE:
        raise Failed(f"token exchange: issued_token_type {body.get('issued_token_type')}")
    if "refresh_token" in body:
        raise Failed("token exchange: a refresh token was issued")
    new = unverified(body["access_token"])
    scope = set(new.get("scope", "").split())
    if new.get("sub") != original.get("sub"):
        raise Failed(f"token exchange: sub {new.get('sub')} != {original.get('sub')}")
    if new.get("aud") != args.audience:
        raise Failed(f"token exchange: aud {new.get('aud')} (expected only {args.audience})")
    if new.get("act", {}).get("sub") != args.client_id:
        raise Failed(f"token exchange: act {new.get('act')}")
    if not scope <= granted or (args.scope and scope != set(args.scope.split())):
        raise Failed(f"token exchange: scope {sorted(scope)} from {sorted(granted)}")
    if new.get("exp", 0) > original.get("exp", 0):
        raise Failed("token exchange: the new token outlives the original")
    print(
        f"exchanged: token_type={body.get('token_type')} sub={new['sub']} aud={new['aud']} "
        f"scope={new.get('scope', '')} act.sub={new['act']['sub']} refresh_token=none"
    )
    status, info = introspect(meta, key, args.client_id, body["access_token"])
    if status != 200 or info.get("active") is not True or info.get("act") != new["act"]:
        raise Failed(f"introspection of the exchanged token: HTTP {status} {info}")
    print(f"introspection: active=true act.sub={info['act']['sub']}")

    if args.resource:
        status, body = token_exchange(meta, key, args.client_id, subject_token, resources=[args.resource])
        if status != 200 or unverified(body.get("access_token", "")).get("aud") != args.resource:
            raise Failed(f"token exchange for a resource: HTTP {status} {body}")
        print(f"resource: aud={args.resource}")

    wider = " ".join(sorted(granted | {"tessera-test-wider"}))
    status, body = token_exchange(meta, key, args.client_id, subject_token, [args.audience], scope=wider)
    expect_error("wider scope", status, body, 400, "invalid_scope")
    status, body = token_exchange(meta, key, args.client_id, subject_token, [args.audience, args.audience + "-2"])
    expect_error("two audiences", status, body, 400, "invalid_target")
    status, body = token_exchange(
        meta, key, args.client_id, subject_token, resources=["https://unregistered.example/api"]
    )
    expect_error("unregistered resource", status, body, 400, "invalid_target")
    status, body = token_exchange(meta, key, args.client_id, "not-a-token", [args.audience])
    expect_error("not an access token", status, body, 400, "invalid_grant")
    status, body = token_exchange(meta, key, args.client_id, subject_token, [args.audience], auth=False)
    expect_error("no client authentication", status, body, 401, "invalid_client")
    print("OK: token exchange with private_key_jwt, narrowed, act, errors refused")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    k = sub.add_parser("keygen", help="make a P-256 key; print its public JWK Set")
    k.add_argument("--out", required=True, help="where to write the private key (PEM)")
    c = sub.add_parser("client-credentials", help="the client_credentials flow")
    c.add_argument("--base", default="http://127.0.0.1:8080")
    c.add_argument("--client-id", required=True)
    c.add_argument("--key", required=True, help="the client's private key (PEM)")
    c.add_argument("--scope")
    c.add_argument("--audience")
    x = sub.add_parser("token-exchange", help="the RFC 8693 token exchange flow")
    x.add_argument("--base", default="http://127.0.0.1:8080")
    x.add_argument("--client-id", required=True)
    x.add_argument("--key", required=True, help="the client's private key (PEM)")
    x.add_argument("--subject-token-file", required=True, help="a file holding the user's access token")
    x.add_argument("--audience", required=True, help="the one downstream audience")
    x.add_argument("--scope")
    x.add_argument("--resource", help="a registered resource to ask for as well (RFC 8707)")
    args = p.parse_args()
    try:
        if args.command == "keygen":
            cmd_keygen(args)
        elif args.command == "token-exchange":
            cmd_token_exchange(args)
        else:
            cmd_client_credentials(args)
    except Failed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
