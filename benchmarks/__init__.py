"""On-demand performance benchmarks (issue 19): the project's generate / train / judge paths against raw HF and TRL
in the same process, interleaved with repeats, plus the workflow's per-job overhead, no-op rerun, cost of a new row
and a run's time from its `benchmark:` files. `python -m benchmarks.run --help`. Not a test: nothing here is timed by
CI. This package may import a paper (CUT's trainer): it is not the engine."""
