"""The probe worker: health-checks its share of the fleet and ships the results to Kafka.

Pure policy: `classify` (raw facts -> ProbeResult), `schedule` (when next), `partitioner` (murmur2 like
Kafka), `batcher` (per-partition ProbeBatch envelopes). IO edges: `checks` (aiohttp / asyncio), `producer`
(kafka-python), `share` (consumer group on the inventory topic), `inventory` (file -> inventory topic).
Wiring: `worker` (`run(settings)` for `fleetwatch probe`, `ProbeWorker` with run-until options).
"""
