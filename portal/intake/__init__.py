"""The email intake: an SMTP server for the support address that turns partners' emails into case commands.

`parse` reads a raw email defensively (pure), `rules` decides what to do with it (pure: loops, rate limit,
threading, which customer), `replies` writes the automatic answers (pure), `threads` remembers which
Message-IDs belong to which case, and `server` is the aiosmtpd handler and `run(settings)` of
`fleetwatch intake`.
"""
