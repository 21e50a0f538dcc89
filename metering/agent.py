"""suanli-agent: the provider's metering agent.

    python -m metering.agent keygen   --key agent.key
    python -m metering.agent register --key agent.key --url https://suanli.example.com --api-key KEY --name rack-12

``keygen`` writes an Ed25519 private key (mode 0600) and prints its public half; ``register`` uploads the public
half with the organisation's API key (scope metering:write). Every later report is signed with the private key
(see metering/signing.py). Standard library HTTP only, so the agent installs anywhere the project does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from metering import signing


def keygen(key_path: Path) -> str:
    if key_path.exists():
        raise SystemExit(f"{key_path} exists; refusing to overwrite a key (delete it first if you mean it)")
    key_path.parent.mkdir(parents=True, exist_ok=True)
    pem = signing.generate_private_key_pem()
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return public_key_of(key_path)


def public_key_of(key_path: Path) -> str:
    return signing.public_key_text(signing.public_raw_of(signing.load_private_key(key_path.read_bytes())))


def request_json(
    method: str,
    base_url: str,
    path: str,
    api_key: str,
    payload: Any = None,
    key_path: Path | None = None,
    idempotency_key: str | None = None,
    timeout: float = 30,
) -> tuple[int, Any]:
    """One API call, signed when a key is given. Returns (status, decoded JSON or None)."""
    body = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
    headers = {"Authorization": f"Api-Key {api_key}", "Accept": "application/json"}
    if payload is not None:
        headers["Content-Type"] = "application/json"
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    if key_path is not None:
        private_key = signing.load_private_key(key_path.read_bytes())
        headers.update(signing.signed_headers(private_key, int(time.time()), method, path, body))
    if not base_url.startswith(("https://", "http://")):
        raise SystemExit(f"--url must be http(s)://, not {base_url!r}")
    url = base_url.rstrip("/") + path
    request = urllib.request.Request(url, data=body or None, method=method, headers=headers)  # noqa: S310 - checked
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked above
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            return error.code, json.loads(raw) if raw else None
        except ValueError:
            return error.code, raw.decode(errors="replace")


def register(key_path: Path, base_url: str, api_key: str, name: str) -> tuple[int, Any]:
    payload = {"name": name, "public_key": public_key_of(key_path)}
    # A retried registration (same name and key) replays the first answer.
    idem = "register-" + str(uuid.uuid5(uuid.NAMESPACE_URL, json.dumps(payload, sort_keys=True)))
    status, body = request_json(
        "POST", base_url, "/api/v1/metering/signing-keys", api_key, payload, idempotency_key=idem
    )
    if status == 409 and isinstance(body, dict) and _error_code(body) == "duplicate_public_key":
        return 200, {"detail": "this public key is registered already", "public_key": payload["public_key"]}
    return status, body


def _error_code(body: dict[str, Any]) -> str | None:
    errors = body.get("errors") or [{}]
    return errors[0].get("code")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="suanli-agent", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_keygen = sub.add_parser("keygen", help="create an Ed25519 key pair; print the public key")
    p_keygen.add_argument("--key", type=Path, required=True, help="where to write the private key")
    p_register = sub.add_parser("register", help="register the public key with the platform")
    p_register.add_argument("--key", type=Path, required=True)
    p_register.add_argument("--url", required=True, help="the platform's base URL")
    p_register.add_argument("--api-key", default=os.environ.get("SUANLI_API_KEY"), help="or $SUANLI_API_KEY")
    p_register.add_argument("--name", default=os.uname().nodename)
    args = parser.parse_args(argv)

    if args.command == "keygen":
        public = keygen(args.key)
        print(public)
        print(f"fingerprint {signing.fingerprint(signing.parse_public_key(public))}", file=sys.stderr)
        return 0
    if not args.api_key:
        parser.error("--api-key or $SUANLI_API_KEY is required")
    status, body = register(args.key, args.url, args.api_key, args.name)
    print(json.dumps(body, ensure_ascii=False, indent=2))
    return 0 if status in (200, 201) else 1


if __name__ == "__main__":
    sys.exit(main())
