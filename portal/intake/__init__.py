"""The email intake: an SMTP server for the support address that turns partners' emails into case commands.

`parse` reads a raw email defensively (pure), `auth` decides whether its sender is authenticated (pure:
envelope/From alignment and the partner's `mail_auth` policy), `verify` gathers the evidence (DKIM via
dkimpy and DNS, a trusted MTA's Authentication-Results), `rules` decides what to do with it (pure: loops,
rate limit, threading, which customer, unauthenticated mail kept for staff), `replies` writes the automatic
answers (pure), `threads` remembers which of a partner's Message-IDs belong to which case, and `server` is
the aiosmtpd handler and `run(settings)` of `fleetwatch intake`.
"""
