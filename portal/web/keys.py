"""Typed application keys of the portal's aiohttp app: what every handler may take from `request.app`.

`create_app` fills them; pages, staff console and downloads read them (`request.app[KEYS.directory]`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import jinja2
from aiohttp import web

from fleetcore.clock import Clock
from fleetcore.settings import Settings
from portal.directory import Directory
from schemas.commands import CaseCommand
from schemas.portal import PortalAuditEvent

if TYPE_CHECKING:
    from portal.readmodel import ReadModel
    from portal.web.auth import AuthState

SendCommand = Callable[[CaseCommand], Awaitable[None]]
"""Writes one command to case-commands (key: case id) and returns once the broker acknowledged it."""

Audit = Callable[[PortalAuditEvent], Awaitable[None]]
"""Writes one audit event to portal-audit (key: user name)."""


class _Keys:
    """The portal's app keys (one instance: `KEYS`)."""

    directory: web.AppKey[Directory] = web.AppKey("fw_directory", Directory)
    readmodel: web.AppKey[ReadModel] = web.AppKey("fw_readmodel")
    settings: web.AppKey[Settings] = web.AppKey("fw_settings", Settings)
    send_command: web.AppKey[SendCommand] = web.AppKey("fw_send_command")
    audit: web.AppKey[Audit] = web.AppKey("fw_audit")
    clock: web.AppKey[Clock] = web.AppKey("fw_clock")
    templates: web.AppKey[jinja2.Environment] = web.AppKey("fw_templates", jinja2.Environment)
    auth: web.AppKey[AuthState] = web.AppKey("fw_auth")
    """Sessions, signing key and sign-in throttle (portal.web.auth)."""


KEYS = _Keys()
