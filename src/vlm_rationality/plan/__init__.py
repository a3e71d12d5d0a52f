"""Everything decided before a job runs, without torch: the config check (`config`, `schema`), sweeps and protocol
switches that turn a config into named variants, job sizing (`sizing`) and the cost of a whole grid (`cost`,
`vlm-rationality plan`). The workflow reads this package at every start; it reads the dataset and model adapters'
declarations (`data`, `models.adapter`), which import no torch either."""
