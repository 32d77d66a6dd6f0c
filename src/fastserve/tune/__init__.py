"""`fastserve tune`: the batching parameters with the highest throughput within a p99 target.

Each candidate setting is measured on a fresh `fastserve` (the same command, on free loopback
ports, with `--enable_batching --batching_parameters_file=<candidate>`) under a closed-loop
gRPC Predict load: `--concurrency` requests in flight, each carrying `--rows_per_request` rows.
The load comes from h2load (Debian's nghttp2-client) sending one pre-built gRPC frame, or, when
h2load is not installed, from Python gRPC client processes (which cost the server CPU on a
small machine: the report says which generator ran). A request counts as answered only if
its gRPC status is OK; a gRPC error (an HTTP 200 with its status in the trailers) is a failed
request, and a point with failed requests is never chosen.

The search is coordinate-wise: max_batch_size over powers of two, then batch_timeout_micros,
then num_batch_threads, each swept with the others fixed at the best point so far, in rounds
until nothing improves or `--budget_seconds` runs out. "Best" is the highest throughput among
points whose p99 is within `--p99_ms` (and that answered every request); while no point meets
the target, the lowest p99. The winner is written as a TF Serving BatchingParameters text
proto whose header comments give the measured numbers.

With `--server HOST:PORT` tune drives a server that is already running. It cannot change that
server's batching parameters (fastserve, like TF Serving, reads them once at start-up), so it
measures the server as it is under the load shape and reports whether it meets the target
(exit 0) or not (exit 1), writing no parameters file.

The modules, one job each: `search` (candidates, points, the search), `request` (the Predict
sent), `command` (flags, the run, the conclusion), `report` (table, parameters file, plot);
and two that the benchmarks and the tests use as well: `load` (h2load, wrk and Python gRPC
load generators, percentiles) and `processes` (server processes on free loopback ports).
"""

from fastserve.tune.command import main, parser
from fastserve.tune.request import TuneError, parse_input
from fastserve.tune.search import Candidate, Point, Space, better, search

__all__ = [
    "Candidate",
    "Point",
    "Space",
    "TuneError",
    "better",
    "main",
    "parse_input",
    "parser",
    "search",
]
