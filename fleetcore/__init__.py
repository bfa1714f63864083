"""Ground floor shared by every fleetwatch worker: clock, settings, errors, logging and metrics set-up.

Nothing here imports Kafka, Faust or aiohttp, and nothing here imports the wiring package (`fleetwatch`).
"""
