"""`fleetwatch intake`: the SMTP server of the support address, turning emails into case commands.

An aiosmtpd server on `intake_host:intake_port` (size limit `intake_max_bytes` enforced while DATA is
read: 552). RCPT accepts only the directory's support address (550 otherwise). For each email
(`Intake.process`):

  1. parse it (`parse.parse_mail`, in a worker thread); what cannot become a case goes to the dead-letter
     topic with the reason and is answered 550;
  2. find the partner by the From address, apply the loop rules, authenticate the sender under the
     partner's `mail_auth` policy (`auth.verdict`: envelope MAIL FROM aligned with From, plus DKIM
     verified through `intake_dns_resolver` and/or a trusted MTA's Authentication-Results; a DNS
     timeout is answered 451), and, when authenticated, find the case it refers to (case tag, ticket
     tag, In-Reply-To/References through the `ThreadStore`, keyed by partner, and, when given, the
     portal's read model); a case is only ever matched when it belongs to the sender's partner (or one of
     its customers);
  3. `rules.decide`: OPEN a case (deterministic ids: a redelivered email opens nothing new), add the email
     to its case (CUSTOMER_REPLIED), or neither; the rate limit may take the answer away. Unauthenticated
     email opens a staff-only case (no partner, customer `UNAUTHENTICATED_CUSTOMER`, `details.
     unauthenticated` = the reason, no `from`, so nothing is ever written to the address it claims) and
     is not answered;
  4. send the command (acks=all) and only then answer 250; a command Kafka did not take is answered 451,
     so the sending MTA retries (the ids make the retry harmless);
  5. record the email's and the answer's Message-IDs (under the partner), and send the answer
     (acknowledgement with its troubleshooting links made absolute on the portal's public URL, "added to
     your case", or the polite unknown-sender reply) through `smtp_host:smtp_port` in the background.

Nothing an email contains can stop the server: any exception while handling one is logged and answered
451 (temporary), and the server goes on with the next. `run(settings)` serves until SIGINT/SIGTERM;
`Intake` is the same as an async start/stop pair for tests and `fleetwatch up`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol

import aiosmtplib
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiosmtpd.smtp import SMTP

from casefile.view import CaseView
from fleetcore.clock import Clock, SystemClock, clock_for
from fleetcore.errors import BrokerError
from fleetcore.kafka_admin import ensure_topics
from fleetcore.logs import setup_logging
from fleetcore.settings import Settings
from portal.directory import Directory, MailAuthRequirement, Partner, load_directory
from portal.intake import replies
from portal.intake.auth import AuthResult, DkimResult, Evidence, Verdict, verdict
from portal.intake.parse import MalformedMail, ParsedMail, clip, one_line, parse_mail
from portal.intake.rules import (
    Action,
    Answer,
    Plan,
    RateLimiter,
    RefKind,
    Thread,
    command_id_for,
    decide,
    loop_check,
    rate_limited,
    references_of,
)
from portal.intake.threads import UNAUTHENTICATED, ThreadStore
from portal.intake.verify import DnsUnavailable, TxtLookup, dkim_results, resolver_lookup, trusted_results
from schemas.cases import CaseSource, CaseState
from schemas.commands import CaseCommand, CommandType
from schemas.deadletter import DeadLetter
from schemas.topics import Topics

log = logging.getLogger(__name__)

CONSUMER = "intake"
DEAD_LETTER_TOPIC = "smtp:intake"
"""`source_topic` of the intake's dead letters (the email came over SMTP, not from a topic)."""
PAYLOAD_MAX = 65536
SEND_TIMEOUT_S = 15.0
ANSWER_ATTEMPTS = 3
ANSWER_TIMEOUT_S = 10.0
PARSE_CONCURRENCY = 4
"""Emails parsed at once at most (each may hold intake_max_bytes and its parse tree in memory)."""


class CommandNotSent(BrokerError):
    """Kafka did not take a command or dead letter in time (the email is answered 451)."""


class CaseLookup(Protocol):
    """What the intake asks the portal's read model (`portal.readmodel.ReadModel` fits)."""

    def get(self, ref: str) -> CaseView | None: ...

    def views(self) -> list[CaseView]: ...


SendCommand = Callable[[CaseCommand], Awaitable[None]]
SendDeadLetter = Callable[[DeadLetter, str], Awaitable[None]]
"""(letter, key) -> None."""
SendMail = Callable[[EmailMessage, str], Awaitable[None]]
"""(message, recipient) -> None; raises when the message could not be handed over."""


@dataclass
class IntakeStats:
    """Counts since start (tests, the stop log line)."""

    received: int = 0
    opened: int = 0
    replies: int = 0
    unknown: int = 0
    ignored: int = 0
    rate_limited: int = 0
    answers_sent: int = 0
    answers_failed: int = 0
    dead_letters: int = 0
    errors: int = 0
    refused_recipients: int = 0
    unauthenticated: int = 0


@dataclass(frozen=True)
class IntakeConfig:
    support_address: str
    max_parts: int
    rate_per_hour: int
    portal_url: str = ""
    """The portal's public URL: the unknown-sender reply names it, relative troubleshooting links join it."""
    trusted_authserv_ids: tuple[str, ...] = ()
    """Receiving MTAs whose Authentication-Results are honoured (`verify.trusted_results`)."""
    dns_resolver: str = ""
    dns_timeout_s: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings, directory: Directory) -> IntakeConfig:
        portal = settings.portal_public_url or f"http://{settings.portal_host}:{settings.portal_port}"
        trusted = tuple(
            t.strip().lower() for t in settings.intake_trusted_authserv_ids.split(",") if t.strip()
        )
        return cls(
            support_address=directory.support_address.strip().lower(),
            max_parts=settings.intake_max_parts,
            rate_per_hour=settings.intake_rate_per_hour,
            portal_url=portal.rstrip("/"),
            trusted_authserv_ids=trusted,
            dns_resolver=settings.intake_dns_resolver.strip(),
            dns_timeout_s=settings.intake_dns_timeout_s,
        )


class Intake:
    """The intake's logic behind the SMTP handler: `process(raw, envelope_sender) -> SMTP reply`."""

    def __init__(
        self,
        config: IntakeConfig,
        directory: Directory,
        *,
        send_command: SendCommand,
        send_dead_letter: SendDeadLetter,
        send_mail: SendMail,
        threads: ThreadStore,
        lookup: CaseLookup | None = None,
        clock: Clock | None = None,
        wall_clock: Clock | None = None,
        dns_lookup: TxtLookup | None = None,
    ) -> None:
        self.config = config
        self.directory = directory
        self.send_command = send_command
        self.send_dead_letter = send_dead_letter
        self.send_mail = send_mail
        self.threads = threads
        self.lookup = lookup
        self.dns_lookup = dns_lookup or resolver_lookup(config.dns_resolver, config.dns_timeout_s)
        """DKIM key lookups (dkimpy's dnsfunc)."""
        self.clock = clock or SystemClock()
        """Policy time: the `at` of commands."""
        self.wall_clock = wall_clock or SystemClock()
        """Real time: the rate limit (mail loops run in real time, whatever the policy clock's scale)."""
        self.limiter = RateLimiter(config.rate_per_hour)
        self.answer_backoff_s = 1.0
        """Wait before the n-th retry of an answer: n times this (real seconds)."""
        self.stats = IntakeStats()
        self._answers: set[asyncio.Task[None]] = set()
        self._parsing = asyncio.Semaphore(PARSE_CONCURRENCY)

    # -- SMTP hooks (the names aiosmtpd calls) ---------------------------------------------------------

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.strip().lower() != self.config.support_address:
            self.stats.refused_recipients += 1
            return "550 5.1.1 No such recipient here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        raw = content if isinstance(content, bytes) else str(content).encode("utf-8", errors="replace")
        return await self.process(raw, str(envelope.mail_from or ""))

    async def handle_exception(self, error: Exception) -> str:
        self.stats.errors += 1
        log.error("intake: SMTP session error: %s: %s", type(error).__name__, error)
        return "451 4.3.0 Temporary failure, please try again later"

    # -- one email -------------------------------------------------------------------------------------

    async def process(self, raw: bytes, envelope_sender: str) -> str:
        """Handle one email; returns the SMTP reply. Never raises."""
        self.stats.received += 1
        try:
            return await self._process(raw, envelope_sender)
        except CommandNotSent as exc:
            self.stats.errors += 1
            log.error("intake: cannot file an email from %s now: %s", one_line(envelope_sender), exc)
            return "451 4.3.0 Cannot file your email right now, please try again later"
        except DnsUnavailable as exc:
            self.stats.errors += 1
            log.warning(
                "intake: cannot verify an email from %s now: %s", one_line(envelope_sender)[:200], exc
            )
            return "451 4.7.5 Cannot verify the sender right now, please try again later"
        except Exception:
            self.stats.errors += 1
            log.exception("intake: failed to handle an email from %s", one_line(envelope_sender)[:200])
            return "451 4.3.0 Temporary failure, please try again later"

    async def _process(self, raw: bytes, envelope_sender: str) -> str:
        try:
            async with self._parsing:
                mail = await asyncio.to_thread(parse_mail, raw, max_parts=self.config.max_parts)
        except MalformedMail as exc:
            await self._dead_letter(raw, str(exc))
            log.warning("intake: rejected an email from %s: %s", one_line(envelope_sender)[:200], exc)
            return f"550 5.6.0 Cannot accept this message: {one_line(str(exc))[:200]}"
        partner = self.directory.partner_for_sender(mail.sender)
        loop = loop_check(mail, envelope_sender, self.config.support_address)
        auth = await self._authenticate(raw, mail, envelope_sender, partner if loop.file else None)
        key = _thread_key(partner, auth)
        duplicate = self.threads.get(key, mail.key) is not None
        thread = (
            self._thread(mail, partner) if partner is not None and loop.file and auth.authenticated else None
        )
        plan = decide(mail, partner=partner, loop=loop, thread=thread, duplicate=duplicate, auth=auth)
        if plan.answer is not Answer.NONE and not self.limiter.allow(mail.sender, self.wall_clock.now()):
            plan = rate_limited(plan)
            self.stats.rate_limited += 1
        log.info("intake: %s %s: %s", mail.sender, mail.key[:80], plan.note)
        if plan.action is Action.NONE:
            if plan.answer is Answer.UNKNOWN_SENDER:
                self.stats.unknown += 1
            else:
                self.stats.ignored += 1
            self._answer(plan, mail, partner)
            return "250 2.0.0 Accepted"
        assert plan.case_id is not None
        await self.send_command(self._command(plan, mail, envelope_sender))
        self.threads.add(key, mail.key, plan.case_id, plan.partner_id)
        if plan.unauthenticated is not None:
            self.stats.unauthenticated += 1
            log.warning("intake: unauthenticated email from %s: %s", mail.sender, plan.unauthenticated)
        elif plan.action is Action.OPEN:
            self.stats.opened += 1
        else:
            self.stats.replies += 1
        self._answer(plan, mail, partner)
        return f"250 2.0.0 Filed in case {plan.case_id}"

    # -- authentication --------------------------------------------------------------------------------

    async def _authenticate(
        self, raw: bytes, mail: ParsedMail, envelope_sender: str, partner: Partner | None
    ) -> Verdict:
        """The sender's verdict under `partner`'s policy (alignment only for a sender of no partner). Looks
        up only what the policy needs; DKIM (DNS) in a worker thread. Raises `DnsUnavailable`."""
        require = partner.mail_auth.require if partner is not None else MailAuthRequirement.NONE
        dkim: tuple[DkimResult, ...] = ()
        if require in (MailAuthRequirement.DKIM, MailAuthRequirement.ANY):
            dkim = await asyncio.to_thread(dkim_results, raw, self.dns_lookup)
        trusted: tuple[AuthResult, ...] = ()
        if require in (MailAuthRequirement.AUTHRES, MailAuthRequirement.ANY):
            trusted = trusted_results(raw, self.config.trusted_authserv_ids)
        return verdict(mail, envelope_sender, Evidence(dkim=dkim, authres=trusted), require)

    # -- threading -------------------------------------------------------------------------------------

    def _thread(self, mail: ParsedMail, partner: Partner) -> Thread | None:
        """The case `mail` refers to, if it belongs to `partner` (others' cases are never matched)."""
        unresolved: list[str] = []
        candidates: list[tuple[str, tuple[Thread, str | None]]] = []
        for kind, ref in references_of(mail):
            found = self._find(kind, ref, partner.partner_id)
            if found is not None:
                candidates.append((f"{kind} {ref}", found))
            elif kind is RefKind.MESSAGE_ID:
                unresolved.append(ref)
        if unresolved and self.lookup is not None:  # one pass over the read model for all the others
            views = self._views_by_message_id(set(unresolved), partner)
            candidates += [
                (f"message-id {ref}", self._thread_of(view.case_id, view.partner, view))
                for ref in unresolved
                if (view := views.get(ref)) is not None
            ]
        for what, (thread, customer) in candidates:
            if thread.partner_id == partner.partner_id or (
                thread.partner_id is None and customer is not None and customer in partner.customers
            ):
                return thread
            log.warning("intake: %s names %s of another partner; not threaded", mail.sender, what)
        return None

    def _find(self, kind: RefKind, ref: str, partner_id: str) -> tuple[Thread, str | None] | None:
        """The case `ref` names, from the thread store first (`partner_id`'s own Message-IDs only), then
        the read model (no scans)."""
        if kind is RefKind.MESSAGE_ID:
            record = self.threads.get(partner_id, ref)
            if record is None:
                return None
            return self._thread_of(record.case_id, record.partner_id, self._view(record.case_id))
        view = self._view(ref)
        if kind is RefKind.CASE:
            record = self.threads.case(ref)
            if record is not None:
                return self._thread_of(ref, record.partner_id, view)
        if view is None:
            return None
        return self._thread_of(view.case_id, view.partner, view)

    @staticmethod
    def _thread_of(case_id: str, partner_id: str | None, view: CaseView | None) -> tuple[Thread, str | None]:
        if view is None:
            return Thread(case_id, partner_id), None
        return (
            Thread(case_id, view.partner or partner_id, open=view.state is not CaseState.CLOSED),
            view.customer,
        )

    def _view(self, ref: str) -> CaseView | None:
        return self.lookup.get(ref) if self.lookup is not None else None

    def _views_by_message_id(self, wanted: set[str], partner: Partner) -> dict[str, CaseView]:
        """`partner`'s cases whose events record one of the `wanted` Message-IDs (`details.message_id`):
        another partner's case that records the same Message-ID is never a candidate."""
        found: dict[str, CaseView] = {}
        for view in self.lookup.views() if self.lookup is not None else ():
            if not (
                view.partner == partner.partner_id
                or (view.partner is None and view.customer is not None and view.customer in partner.customers)
            ):
                continue
            for event in view.timeline:
                mid = event.details.get("message_id")
                if isinstance(mid, str) and mid in wanted:
                    found.setdefault(mid, view)
        return found

    # -- commands and answers --------------------------------------------------------------------------

    def _command(self, plan: Plan, mail: ParsedMail, envelope_sender: str) -> CaseCommand:
        assert plan.case_id is not None
        details: dict[str, str | int | float | bool | None] = {
            "from": mail.sender,
            "message_id": mail.message_id,
            "attachments": _attachments_json(mail),
            "attachment_count": len(mail.attachments),
        }
        if mail.clipped:
            details["clipped"] = True
        actor = clip(f"email:{mail.sender}", 200)
        message = mail.body or "(no text)"
        if plan.unauthenticated is not None:
            # no `from`: the engine would write to it (the requester); the address is only claimed
            del details["from"]
            details.update(
                {
                    "unauthenticated": clip(one_line(plan.unauthenticated), 1000),
                    "claimed_from": mail.sender,
                    "claimed_partner": plan.claimed_partner,
                    "envelope_from": clip(one_line(envelope_sender), 300),
                }
            )
            actor = clip(f"unauthenticated-email:{mail.sender}", 200)
            return CaseCommand(
                command_id=command_id_for(mail, "open-unauthenticated"),
                case_id=plan.case_id,
                type=CommandType.OPEN,
                at=self.clock.now(),
                actor=actor,
                reason=clip(
                    f"unauthenticated email claiming to be from {mail.sender}: {plan.unauthenticated}", 4000
                ),
                source=CaseSource.EMAIL,
                customer_id=plan.customer_id,
                partner_id=None,
                severity=None,
                title=mail.subject or "(no subject)",
                message=message,
                details=details,
            )
        if plan.action is Action.OPEN:
            if plan.follows:
                details["follows"] = plan.follows
            return CaseCommand(
                command_id=command_id_for(mail, "open"),
                case_id=plan.case_id,
                type=CommandType.OPEN,
                at=self.clock.now(),
                actor=actor,
                reason=clip(f"email from {mail.sender}", 4000),
                source=CaseSource.EMAIL,
                customer_id=plan.customer_id,
                partner_id=plan.partner_id,
                severity=None,
                title=mail.subject or "(no subject)",
                message=message,
                details=details,
            )
        details["subject"] = mail.subject
        return CaseCommand(
            command_id=command_id_for(mail, "reply"),
            case_id=plan.case_id,
            type=CommandType.CUSTOMER_REPLIED,
            at=self.clock.now(),
            actor=actor,
            reason=clip(f"email reply from {mail.sender}", 4000),
            message=message,
            details=details,
        )

    async def _dead_letter(self, raw: bytes, reason: str) -> None:
        letter = DeadLetter(
            source_topic=DEAD_LETTER_TOPIC,
            partition=0,
            offset=0,
            consumer=CONSUMER,
            reason=reason,
            payload=raw[:PAYLOAD_MAX].decode("utf-8", errors="replace"),
            rejected_at=self.clock.now(),
        )
        await self.send_dead_letter(letter, f"{DEAD_LETTER_TOPIC}:{hashlib.sha256(raw).hexdigest()[:16]}")
        self.stats.dead_letters += 1

    def _answer(self, plan: Plan, mail: ParsedMail, partner: Partner | None) -> None:
        """Build the plan's answer, remember its Message-ID, and send it in the background."""
        now = self.clock.now()
        support = self.config.support_address
        if plan.answer is Answer.ACK and plan.case_id and partner is not None and plan.customer_id:
            message = replies.acknowledgement(
                mail,
                case_id=plan.case_id,
                partner_name=partner.name,
                customer_id=plan.customer_id,
                links=replies.absolute_links(self.directory.troubleshooting_links, self.config.portal_url),
                support_address=support,
                now=now,
            )
        elif plan.answer is Answer.ADDED and plan.case_id:
            message = replies.added_to_case(mail, case_id=plan.case_id, support_address=support, now=now)
        elif plan.answer is Answer.UNKNOWN_SENDER:
            message = replies.unknown_sender(
                mail, support_address=support, portal_url=self.config.portal_url, now=now
            )
        else:
            return
        if plan.case_id:
            self.threads.add(plan.partner_id, str(message["Message-ID"]), plan.case_id, plan.partner_id)
        task = asyncio.create_task(self._deliver(message, mail.sender))
        self._answers.add(task)
        task.add_done_callback(self._answers.discard)

    async def _deliver(self, message: EmailMessage, recipient: str) -> None:
        for attempt in range(1, ANSWER_ATTEMPTS + 1):
            try:
                await self.send_mail(message, recipient)
            except Exception as exc:  # SMTP refusals, connection errors, timeouts
                log.warning("intake: answer to %s failed (attempt %d): %s", recipient, attempt, exc)
                if attempt < ANSWER_ATTEMPTS:
                    await asyncio.sleep(attempt * self.answer_backoff_s)  # back-off before the next attempt
                continue
            self.stats.answers_sent += 1
            return
        self.stats.answers_failed += 1
        log.error("intake: gave up answering %s (%s)", recipient, message["Subject"])

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait for answers still being sent (at most `timeout_s`)."""
        if self._answers:
            await asyncio.wait(set(self._answers), timeout=timeout_s)


def _thread_key(partner: Partner | None, auth: Verdict) -> str | None:
    """What an email's Message-ID is recorded and looked up under: its partner, or `UNAUTHENTICATED`."""
    if partner is None:
        return None
    return partner.partner_id if auth.authenticated else UNAUTHENTICATED


def _attachments_json(mail: ParsedMail) -> str:
    listed = [a.as_dict() for a in mail.attachments[:20]]
    return json.dumps(listed, ensure_ascii=False)


# -- the service ------------------------------------------------------------------------------------------


class IntakeServer:
    """A running intake: producer, thread store, optional read model, SMTP server. `await start()`, then
    `await stop()`."""

    def __init__(
        self,
        settings: Settings,
        *,
        directory: Directory | None = None,
        lookup: CaseLookup | None = None,
        clock: Clock | None = None,
        follow_cases: bool = True,
    ) -> None:
        self.settings = settings
        self.topics = Topics(prefix=settings.topic_prefix)
        self.directory = directory if directory is not None else load_directory(settings.partners_file)
        self.clock = clock or clock_for(settings.clock_scale, settings.clock_origin_ms)
        self.lookup = lookup
        self.follow_cases = follow_cases and lookup is None
        self._readmodel: Any = None
        self._producer: AIOKafkaProducer | None = None
        self._server: asyncio.Server | None = None
        self.port = settings.intake_port
        self.intake = Intake(
            IntakeConfig.from_settings(settings, self.directory),
            self.directory,
            send_command=self._send_command,
            send_dead_letter=self._send_dead_letter,
            send_mail=self._send_mail,
            threads=ThreadStore(_threads_path(settings.data_dir)),
            lookup=lookup,
            clock=self.clock,
        )

    async def _write(self, topic: str, key: str, value: bytes) -> None:
        if self._producer is None:
            raise CommandNotSent("the intake is not started")
        try:
            await asyncio.wait_for(
                self._producer.send_and_wait(topic, value=value, key=key.encode("utf-8")), SEND_TIMEOUT_S
            )
        except (KafkaError, TimeoutError) as exc:
            raise CommandNotSent(f"could not write to {topic}: {exc!r}") from exc

    async def _send_command(self, command: CaseCommand) -> None:
        await self._write(self.topics.case_commands, command.case_id, command.model_dump_json().encode())

    async def _send_dead_letter(self, letter: DeadLetter, key: str) -> None:
        await self._write(self.topics.dead_letter, key, letter.model_dump_json().encode())

    async def _send_mail(self, message: EmailMessage, recipient: str) -> None:
        await aiosmtplib.send(
            message,
            sender=self.intake.config.support_address,
            recipients=[recipient],
            hostname=self.settings.smtp_host,
            port=self.settings.smtp_port,
            timeout=ANSWER_TIMEOUT_S,
        )

    async def start(self) -> None:
        settings = self.settings
        if settings.create_topics:
            await asyncio.to_thread(ensure_topics, settings.kafka_bootstrap, self.topics)
        if self.follow_cases:
            from portal.readmodel import ReadModel

            self._readmodel = ReadModel(settings.kafka_bootstrap, self.topics.cases, settings)
            self._readmodel.start()
            self.intake.lookup = self._readmodel
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            client_id="fleetwatch-intake",
        )
        try:
            await producer.start()
        except KafkaError as exc:
            await self._stop_readmodel()
            raise BrokerError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from exc
        self._producer = producer
        loop = asyncio.get_running_loop()
        limit = settings.intake_max_bytes
        intake = self.intake
        self._server = await loop.create_server(
            lambda: SMTP(
                intake,
                data_size_limit=limit,
                enable_SMTPUTF8=True,
                hostname="fleetwatch-intake",
                ident="fleetwatch intake",
                timeout=60,
                loop=loop,
            ),
            host=settings.intake_host,
            port=settings.intake_port,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info(
            "intake: SMTP on %s:%d for %s (answers via %s:%d)",
            settings.intake_host,
            self.port,
            intake.config.support_address,
            settings.smtp_host,
            settings.smtp_port,
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self.intake.drain()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        await self._stop_readmodel()
        log.info("intake stopped: %s", self.intake.stats)

    async def _stop_readmodel(self) -> None:
        if self._readmodel is not None:
            await asyncio.to_thread(self._readmodel.stop)
            self._readmodel = None


def _threads_path(data_dir: Path) -> Path:
    return data_dir / "intake" / "threads.jsonl"


async def serve(settings: Settings) -> None:
    """Run the intake until SIGINT or SIGTERM."""
    server = IntakeServer(settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await server.start()
    try:
        await stopping.wait()
    finally:
        await server.stop()


def run(settings: Settings) -> None:
    """Entry point of `fleetwatch intake`: serve until SIGINT/SIGTERM. Blocking."""
    setup_logging(settings.log_level)
    if settings.partners_file is None:
        log.warning("intake: no partner directory (FLEETWATCH_PARTNERS_FILE): every sender is unknown")
    asyncio.run(serve(settings))
