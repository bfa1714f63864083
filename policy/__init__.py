"""The support policy as data and pure functions, shared by the case engine, the sink and the read side.

`sla` (SLA clocks and the customers' plan book), `maintenance` (which window covers a server at a moment)
and `maintenance_feed` (the maintenance topic followed into a `MaintenanceBook`: kafka-python in a thread,
no Faust; the one adapter here).
Ground floor: imports `schemas` and `fleetcore` only, so a reader never imports the Faust app (`streams`).
"""
