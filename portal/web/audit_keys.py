"""GET /audit/keys: the public keys that verify case events (JSON, no sign-in: public keys are public).

The same list `fleetwatch audit keys` prints and `casefile.signing.load_keyring` gives every reader: the
`audit_keys_file` list (rotated keys with their validity) plus the engine's own key, when this process can
read it. Read at each request, so a rotation shows without a restart.
"""

from __future__ import annotations

from aiohttp import web

from casefile.signing import SigningKeyError, load_keyring
from portal.web.keys import KEYS


async def audit_keys(request: web.Request) -> web.Response:
    """The key list as JSON (`casefile.signing` documents its fields); 503 if it cannot be read."""
    try:
        ring = load_keyring(request.app[KEYS.settings])
    except SigningKeyError as exc:
        return web.json_response({"error": f"the audit key list cannot be read: {exc}"}, status=503)
    return web.json_response(ring.to_json(), headers={"Cache-Control": "public, max-age=300"})
