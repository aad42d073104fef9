"""Runs: the layer above experiments that owns run folders, seeds, sweeps and signals.

- `folder`: a run folder's life (`running → passed | failed | diverged | interrupted | error`);
- `runner`: resolve a config, run one experiment, check its claims (`run_experiment`);
- `seeds`: seed ensembles in one process (`run_seeds`);
- `sweep`, `sweep_ray`: grids of runs on this machine or on a Ray cluster;
- `memory`: the configured sizes against the device's memory, before anything is allocated;
- `signals`: SIGINT/SIGTERM/SIGHUP checkpoint and stop;
- `api`: `run`, `sweep` (also `icgd.run`, `icgd.sweep`); `loaded`: `load_run`, `Run`.

An experiment knows none of this, so a notebook (`icgd.run`) and the CLI behave the same.
"""
