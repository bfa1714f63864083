"""The read side of the case topic: fold events into case views, verify hash chains, read and command.

`view` and `audit` are pure (events in, views and reports out); `reader` and `commands` are the thin
kafka-python adapters the staff CLI (`fleetwatch case ...`, `fleetwatch audit verify`) uses.
"""
