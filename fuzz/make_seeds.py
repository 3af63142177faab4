#!/usr/bin/env python3
"""Writes the signed seeds of the fuzz targets that need real signatures.

    python3 fuzz/make_seeds.py      (needs the `cryptography` package)

Access tokens are signed with the fixed keys of fuzz/src/lib.rs (`ed`, an
Ed25519 key whose seed is the bytes 0..32, and `ec`, a fixed P-256 key) and
valid at the targets' NOW; DBSC proofs are registration proofs with fresh
keys in their header and refresh proofs signed by the fixed P-256 key the
dbsc_proof target has registered. Every other seed is written by hand or
copied from the tests' own inputs. The output is committed: re-running this
only changes the ECDSA and RSA signatures (they are randomized).
"""
import base64
import json
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

HERE = os.path.dirname(os.path.abspath(__file__))
NOW = 1_796_083_200
ED = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
EC = ec.derive_private_key(0x1234567890ABCDEF1234567890ABCDEF1234567890ABCDEF1234567890ABCDEF, ec.SECP256R1())


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def seg(obj):
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def es256(key, msg):
    r, s = decode_dss_signature(key.sign(msg, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def jws(header, claims, sign):
    signing_input = f"{seg(header)}.{seg(claims)}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def ec_jwk(key):
    n = key.public_key().public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": b64(n.x.to_bytes(32, "big")), "y": b64(n.y.to_bytes(32, "big"))}


def write(target, name, data):
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def access_tokens():
    claims = {
        "iss": "https://issuer.test", "sub": "user-1", "aud": "tessera", "exp": NOW + 300, "iat": NOW,
        "jti": "Jf1Q0Yb7cQ2aHk3uVv9w_A", "client_id": "default", "sid": "ses_abc",
    }
    ed_h = {"typ": "at+jwt", "alg": "EdDSA", "kid": "ed"}
    ec_h = {"typ": "at+jwt", "alg": "ES256", "kid": "ec"}
    ed_sign = ED.sign
    ec_sign = lambda m: es256(EC, m)
    t = "access_token_compact"
    write(t, "valid_eddsa", jws(ed_h, claims, ed_sign))
    write(t, "valid_es256", jws(ec_h, claims, ec_sign))
    full = dict(claims, aud=["tessera", "other"], scope="read write", auth_time=NOW - 60, acr="2",
                amr=["pwd", "otp"], nbf=NOW - 10)
    write(t, "valid_all_claims", jws(ed_h, full, ed_sign))
    write(t, "application_typ", jws(dict(ed_h, typ="application/at+jwt"), claims, ed_sign))
    write(t, "expired", jws(ed_h, dict(claims, exp=NOW - 100, iat=NOW - 400), ed_sign))
    write(t, "not_yet_valid", jws(ed_h, dict(claims, nbf=NOW + 600), ed_sign))
    write(t, "wrong_audience", jws(ed_h, dict(claims, aud="elsewhere"), ed_sign))
    write(t, "wrong_issuer", jws(ed_h, dict(claims, iss="https://evil.test"), ed_sign))
    write(t, "bound_cnf", jws(ed_h, dict(claims, cnf={"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}), ed_sign))
    write(t, "missing_sid", jws(ed_h, {k: v for k, v in claims.items() if k != "sid"}, ed_sign))
    write(t, "alg_swapped", jws(dict(ed_h, alg="ES256"), claims, ed_sign))
    write(t, "alg_none", f"{seg(dict(ed_h, alg='none'))}.{seg(claims)}.")
    write(t, "alg_hs256", jws(dict(ed_h, alg="HS256"), claims, ed_sign))
    write(t, "unknown_kid", jws(dict(ed_h, kid="nope"), claims, ed_sign))
    write(t, "wrong_typ", jws(dict(ed_h, typ="JWT"), claims, ed_sign))
    write(t, "crit", jws(dict(ed_h, crit=["exp"]), claims, ed_sign))
    write(t, "embedded_jwk", jws(dict(ed_h, jwk=ec_jwk(EC)), claims, ed_sign))
    dup = b64(b'{"sub":"a","sub":"b"}')
    write(t, "duplicate_claim", f"{seg(ed_h)}.{dup}.{b64(bytes(64))}")
    write(t, "jwe_five_segments", "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d")


def dbsc_proofs():
    t = "dbsc_proof"
    challenge = b64(os.urandom(60))
    # Registration: a fresh key in the header (ES256 and RS256).
    key = ec.generate_private_key(ec.SECP256R1())
    h = {"typ": "dbsc+jwt", "alg": "ES256", "jwk": ec_jwk(key)}
    write(t, "register_es256", b"\x00" + jws(h, {"jti": challenge}, lambda m: es256(key, m)).encode())
    rkey = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    n = rkey.public_key().public_numbers()
    rjwk = {"kty": "RSA", "n": b64(n.n.to_bytes(256, "big")), "e": b64(n.e.to_bytes(3, "big"))}
    h = {"typ": "dbsc+jwt", "alg": "RS256", "jwk": rjwk}
    write(t, "register_rs256", b"\x00" + jws(h, {"jti": challenge, "aud": "https://site.test"},
                                             lambda m: rkey.sign(m, padding.PKCS1v15(), hashes.SHA256())).encode())
    # Refresh: no jwk, signed by the registered fixed key.
    h = {"typ": "dbsc+jwt", "alg": "ES256"}
    write(t, "refresh_es256", b"\x01" + jws(h, {"jti": challenge}, lambda m: es256(EC, m)).encode())
    write(t, "refresh_with_jwk", b"\x01" + jws(dict(h, jwk=ec_jwk(EC)), {"jti": challenge}, lambda m: es256(EC, m)).encode())
    write(t, "register_dpop_typ", b"\x00" + jws({"typ": "dpop+jwt", "alg": "ES256", "jwk": ec_jwk(EC)},
                                                {"jti": challenge}, lambda m: es256(EC, m)).encode())


def client_assertions():
    """private_key_jwt assertions by the client `fuzz-svc`, whose registered
    key is the fixed P-256 key (the client_assertion target's JWKS)."""
    t = "client_assertion"
    now = 1_800_000_000
    claims = {"iss": "fuzz-svc", "sub": "fuzz-svc", "aud": "https://auth.example/oauth2/token",
              "iat": now, "exp": now + 60, "jti": "seed-1"}
    sign = lambda m: es256(EC, m)
    write(t, "valid_es256", jws({"alg": "ES256", "typ": "JWT", "kid": "k1"}, claims, sign))
    write(t, "valid_no_kid_issuer_aud", jws({"alg": "ES256"}, dict(claims, aud=["https://auth.example"]), sign))
    write(t, "expired", jws({"alg": "ES256", "kid": "k1"}, dict(claims, exp=now - 120), sign))
    write(t, "hs256_public_key_secret", f"{seg({'alg': 'HS256'})}.{seg(claims)}.AAAA")
    write(t, "jwks", json.dumps({"keys": [dict(ec_jwk(EC), kid="k1")]}))


if __name__ == "__main__":
    access_tokens()
    dbsc_proofs()
    client_assertions()
