#!/usr/bin/env python3
"""Verify a Tessera access token with PyJWT, independently of our Rust code.

    python3 tests/interop/verify_with_pyjwt.py JWKS_FILE TOKEN_FILE ISSUER AUDIENCE

JWKS_FILE is the JSON of `GET /.well-known/jwks.json`; TOKEN_FILE holds the
compact JWS (`-` reads it from standard input, so the token never shows in a
process list). The check follows RFC 9068 §4 as a resource server would:

- the protected header has `typ` exactly `at+jwt` and a `kid`;
- the key is the JWKS entry with that `kid` (never a key from the token), it
  is public (no private members), and the algorithm is the key's own (its
  `alg`, else implied by `kty`/`crv`); the header's `alg` must equal it;
- PyJWT verifies the signature, `iss`, `aud`, `exp` and `iat`, and requires
  `exp iat iss sub aud`.

Prints the verified claims as JSON on stdout and exits 0; on any failure
prints the reason on stderr and exits 1 (2 for bad usage, 3 when PyJWT or
`cryptography` is missing: run ./scripts/test, which installs them).
"""

import json
import sys

try:
    import cryptography  # noqa: F401  (PyJWT needs it for EdDSA/ES256/RS256)
    import jwt
    from jwt import PyJWKSet
except ImportError as e:  # pragma: no cover - environment problem
    print(
        f"missing Python package ({e}); run ./scripts/test or "
        "python3 -m pip install 'PyJWT[crypto]>=2.8'",
        file=sys.stderr,
    )
    sys.exit(3)

PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
REQUIRED = ["exp", "iat", "iss", "sub", "aud"]


def fail(msg: str) -> None:
    print(f"REJECTED: {msg}", file=sys.stderr)
    sys.exit(1)


def main(argv: list[str]) -> None:
    if len(argv) != 5:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    jwks_path, token_path, issuer, audience = argv[1:]
    with open(jwks_path, encoding="utf-8") as f:
        jwks = json.load(f)
    if token_path == "-":
        token = sys.stdin.read().strip()
    else:
        with open(token_path, encoding="utf-8") as f:
            token = f.read().strip()

    keys = jwks.get("keys")
    if not isinstance(keys, list) or not keys:
        fail("the JWKS has no keys")
    kids = [k.get("kid") for k in keys]
    if len(set(kids)) != len(kids) or None in kids:
        fail(f"the JWKS kids are missing or not unique: {kids}")
    for k in keys:
        leaked = [m for m in PRIVATE_MEMBERS if m in k]
        if leaked:
            fail(f"JWKS key {k.get('kid')} publishes private members {leaked}")

    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as e:
        fail(f"malformed token: {e}")
    if header.get("typ") != "at+jwt":
        fail(f"header typ is {header.get('typ')!r}, expected 'at+jwt'")
    kid = header.get("kid")
    if not isinstance(kid, str):
        fail("header has no kid")

    try:
        key = PyJWKSet.from_dict(jwks)[kid]
    except KeyError:
        fail(f"kid {kid!r} is not in the JWKS")
    except jwt.PyJWTError as e:
        fail(f"the JWKS does not parse: {e}")
    alg = key.algorithm_name
    if header.get("alg") != alg:
        fail(f"header alg {header.get('alg')!r} is not the key's algorithm {alg!r}")

    try:
        claims = jwt.decode(
            token,
            key=key.key,
            algorithms=[alg],
            audience=audience,
            issuer=issuer,
            options={"require": REQUIRED},
        )
    except jwt.PyJWTError as e:
        fail(f"{type(e).__name__}: {e}")

    print(json.dumps({"alg": alg, "kid": kid, "claims": claims}, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv)
