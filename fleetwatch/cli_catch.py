"""`fleetwatch catch`: the SMTP catcher and the pager/call webhook catcher in the foreground.

    fleetwatch catch [--smtp-port N] [--webhook-port N] [--mail-dir D] [--webhook-log FILE]

The catchers `fleetwatch up` runs, for a notifier (and an intake) started separately: every email sent to the
SMTP catcher is kept as <mail dir>/<n>.eml, every page, call and webhook posted to the webhook catcher is
appended to the JSONL webhook log. Once both listen it prints on stdout, one `name=value` a line, what to give
the notifier:

    smtp=127.0.0.1:2525
    pager_url=http://127.0.0.1:2527/v2/enqueue
    call_url=http://127.0.0.1:2527/call
    webhook_url=http://127.0.0.1:2527/webhook

(as FLEETWATCH_SMTP_HOST / _SMTP_PORT, FLEETWATCH_PAGER_URL, FLEETWATCH_CALL_URL, FLEETWATCH_WEBHOOK_URL), and
then one line on stderr for each message caught. Ports: FLEETWATCH_MAIL_CATCHER_PORT (2525) or --smtp-port,
--webhook-port (2527); 0 is any free port; a default port that is taken moves to a free one, an explicit one
that is taken fails at once. Ctrl-C or SIGTERM stops both.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleetcore.errors import FleetwatchError
from fleetcore.settings import Settings
from fleetwatch.cli_foreground import say, wait_for_signal
from fleetwatch.kafka_local import free_port
from fleetwatch.ports import env_name, explicit_settings, plan_ports, port_taken, taken_ports

SettingsOf = Callable[[argparse.Namespace], Settings]

WEBHOOK_PORT = 2527
"""The webhook catcher's default port (`up` gives its own catcher any free port)."""


def catcher_ports(settings: Settings, smtp_port: int | None, webhook_port: int | None) -> dict[str, int]:
    """The catchers' ports: flags, else defaults; a taken default moves, a taken explicit one fails."""
    wanted = {
        "mail_catcher_port": settings.mail_catcher_port if smtp_port is None else smtp_port,
        "webhook_catcher_port": WEBHOOK_PORT if webhook_port is None else webhook_port,
    }
    explicit = explicit_settings(["mail_catcher_port"])
    explicit |= {
        name for name, flag in zip(wanted, (smtp_port, webhook_port), strict=True) if flag is not None
    }
    taken = taken_ports({}, wanted, port_taken)
    plan = plan_ports(wanted, explicit, taken, iter(free_port, None))
    for name, (default, chosen) in plan.moved.items():
        what = env_name(name) if name == "mail_catcher_port" else "--webhook-port"
        say("catch", f"port {default} ({what}) is taken: using {chosen} instead")
    return plan.ports


def run_catch(
    mail_dir: Path, webhook_log: Path, smtp_port: int, webhook_port: int, stop_when: Callable[[], str | None]
) -> int:
    """Run both catchers until SIGINT/SIGTERM (or `stop_when` names a reason); print where they listen."""
    from fleetwatch.mailcatcher import MailCatcher
    from fleetwatch.stack import hook_text
    from fleetwatch.webhook_catcher import WebhookCatcher

    def on_mail(sender: str, recipients: list[str], subject: str) -> None:
        say("catch", f"[mail] from {sender} to {', '.join(recipients)}: {subject}")

    def on_hook(kind: str, body: dict[str, Any]) -> None:
        say("catch", hook_text(kind, body))

    with contextlib.ExitStack() as running:
        try:
            mail = running.enter_context(MailCatcher(mail_dir, port=smtp_port, callback=on_mail))
            hooks = running.enter_context(
                WebhookCatcher(port=webhook_port, path=webhook_log, callback=on_hook)
            )
        except OSError as exc:  # lost a race for a port between the plan and the bind
            raise FleetwatchError(f"a catcher could not listen: {exc}") from exc
        for line in (
            f"smtp={mail.host}:{mail.port}",
            f"pager_url={hooks.pager_url}",
            f"call_url={hooks.call_url}",
            f"webhook_url={hooks.webhook_url}",
        ):
            print(line, flush=True)
        say("catch", f"SMTP catcher on {mail.host}:{mail.port}, mail kept in {mail_dir} (<n>.eml)")
        routes = "pages POST /v2/enqueue, calls POST /call, other notifications POST /webhook"
        say("catch", f"webhook catcher on {hooks.base_url}: {routes}; logged to {webhook_log}")
        notifier = (
            f"FLEETWATCH_SMTP_HOST={mail.host} FLEETWATCH_SMTP_PORT={mail.port} "
            f"FLEETWATCH_PAGER_URL={hooks.pager_url} FLEETWATCH_CALL_URL={hooks.call_url}"
        )
        say("catch", f"notifier: {notifier}. Ctrl-C stops.")
        reason = wait_for_signal(stop_when)
    say("catch", f"stopped{f' ({reason})' if reason else ''}")
    return 0


def _cmd_catch(args: argparse.Namespace, settings_of: SettingsOf) -> int:
    settings = settings_of(args)
    ports = catcher_ports(settings, args.smtp_port, args.webhook_port)
    mail_dir = Path(args.mail_dir) if args.mail_dir else settings.data_dir / "mail"
    webhook_log = Path(args.webhook_log) if args.webhook_log else settings.data_dir / "webhooks.jsonl"
    return run_catch(
        mail_dir, webhook_log, ports["mail_catcher_port"], ports["webhook_catcher_port"], lambda: None
    )


def register(sub: Any, common: Callable[[argparse.ArgumentParser], None], settings_of: SettingsOf) -> None:
    """Add `catch` to the `fleetwatch` subcommands (`sub`: its subparsers)."""
    p: argparse.ArgumentParser = sub.add_parser(
        "catch", help="run the SMTP and the pager/call webhook catchers in the foreground",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    common(p)
    p.add_argument(
        "--smtp-port", type=int, help="SMTP catcher port (env FLEETWATCH_MAIL_CATCHER_PORT; 0: free)"
    )
    p.add_argument("--webhook-port", type=int, help=f"webhook catcher port (default {WEBHOOK_PORT}; 0: free)")
    p.add_argument("--mail-dir", help="where caught mail is kept (default <data dir>/mail)")
    p.add_argument("--webhook-log", help="JSONL file of caught webhooks (default <data dir>/webhooks.jsonl)")
    p.set_defaults(handler=lambda args: _cmd_catch(args, settings_of))
