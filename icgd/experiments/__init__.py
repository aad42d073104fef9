"""Experiments: one package per paper's claim check (`icgd/experiments/<name>/`).

`icgd.experiments.api` states what an experiment provides (the `Experiment` protocol) and holds
the registry `EXPERIMENTS`, filled on first lookup from the sub-packages here that define
`EXPERIMENT` and from plugins (entry-point group `icgd.experiments`). `common/` holds pieces that
several experiments share. `import icgd.experiments` imports none of them.
"""
