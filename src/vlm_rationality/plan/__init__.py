"""Everything decided before a job runs, without torch: the config check (`config`, `schema`), sweeps and protocol
switches that turn a config into named variants, each model adapter's facts (`archs`), job sizing (`sizing`) and
the cost of a whole grid (`cost`, `vlm-rationality plan`). The workflow reads this package at every start."""
