"""A simulated fleet of up to a million servers on loopback, for `fleetwatch sim`, `up --fleet sim:N`,
tests and benchmarks.

- `layout`: who server `i` is (id, customer, site, partner, role, http or tcp), pure arithmetic on `i`;
- `scenario`: what server `i` does at `t` seconds after the start (a seeded YAML script: down, 503, hang,
  slow, flap, customer-down, site-down) and the ground truth `outages(start, end)`; pure, time passed in;
- `server`: the thin aiohttp server (http servers by path `/s/<i>` or Host `s<i>.sim` on a few ports) and
  the tcp listener pool (one loopback address per tcp server, one port);
- `inventory`: the fleet's inventory records, published to the inventory topic in batches;
- `command`: `fleetwatch sim` and the child process `fleetwatch up --fleet sim:N` starts.
"""
