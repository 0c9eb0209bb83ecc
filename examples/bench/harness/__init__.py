"""The benchmark harness behind `make bench`, `make bench-smoke` and `make bench-peers`.

Why a package: the harness measures five different things in five different ways, and each
concern changes for its own reasons. One module per concern:

  settings       what every run shares: output paths, request bodies, breaker policies,
                 targets and the run lengths of run / smoke / peers
  procs          process control for a benchmark: the wasm snapshot, per-run work dirs,
                 Envoys and mocks through the shared launcher (examples/launcher.py), CPU and
                 memory of a process from /proc, the machine facts recorded with the results
  envoy_configs  the Envoy bootstraps (bare, with the filter, direct_response) as dicts
  load           load generation: wrk (closed loop, Lua script) and a fixed-rate open-loop
                 client for outages, and the statistics over repeated runs
  cases          the cases: upstream check, per-request cost by path, scaling, outage
  peers          LiteLLM proxy and Portkey's gateway on the same mock: launch, configs,
                 throughput and the outage scenario
  report         BENCHMARKS.md: the generated tables between the <!-- bench... --> markers
  cli            the subcommands (run, smoke, peers, render) and the results JSON

Entry point: examples/bench/bench.py. Python 3.11 standard library only (see README.md).
"""
