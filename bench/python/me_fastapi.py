"""The Python comparison for `GET /api/me`: FastAPI on uvicorn, PyJWT.

It makes the same checks voxgate makes on a bearer token that matter for
the cost: RS256 signature against the realm's JWKS (keys fetched once and
cached by PyJWKClient), exact issuer, audience, required and unexpired
`exp`/`iat`, `typ` = Bearer. Like a typical PyJWT service it verifies the
signature on every request (no validated-token cache) and has no database.

Configuration: OIDC_ISSUER, OIDC_AUDIENCE (default `voxgate`).
"""

import os

import jwt
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

ISSUER = os.environ["OIDC_ISSUER"].rstrip("/")
AUDIENCE = os.environ.get("OIDC_AUDIENCE", "voxgate")
JWKS = jwt.PyJWKClient(f"{ISSUER}/protocol/openid-connect/certs", cache_keys=True)

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


def unauthorized(detail: str) -> JSONResponse:
    return JSONResponse(
        {"title": "Unauthorized", "status": 401, "detail": detail},
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


@app.get("/healthz")
async def healthz():
    return {"status": "ok"}


@app.get("/api/me")
async def me(request: Request):
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return unauthorized("Send `Authorization: Bearer <access token>`.")
    try:
        key = JWKS.get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            key.key,
            algorithms=["RS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=30,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
    except jwt.PyJWTError as e:
        return unauthorized(f"Invalid bearer token: {e}.")
    if claims.get("typ") != "Bearer":
        return unauthorized("Invalid bearer token: not an access token.")
    roles = sorted(set(claims.get("realm_access", {}).get("roles", [])) | {"user"})
    return {
        "keycloakId": claims["sub"],
        "username": claims.get("preferred_username", ""),
        "email": claims.get("email"),
        "firstName": claims.get("given_name", ""),
        "lastName": claims.get("family_name", ""),
        "roles": roles,
        "authenticatedBy": "bearer",
    }
