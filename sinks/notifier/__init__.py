"""The notifier: delivers the case engine's page, email and call requests to people.

Reads the notifications topic, resolves each request's role through the contacts directory
(`directory`), plans what to send to whom (`delivery`, pure), sends it (`transports`: SMTP and JSON
webhooks), and records each delivered (key, contact) on the compacted notify-ledger topic so a key reaches
a contact at most once across restarts (`ledger`, `service`). Every outcome goes back to the case engine
as a `notification_outcome` command.
"""
