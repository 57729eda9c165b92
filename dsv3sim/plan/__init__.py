"""L5: the capacity planner — searches over scenarios under budgets and SLAs, priced, through the one step model.

``plan_training(TrainQuery)`` (train.py), ``plan_serving(ServeQuery)`` (serve.py), ``plan_network(...)`` and
``write_topology`` (network.py), ``add_cost_keys`` for any result (costs.py). Searches run in a local process pool
or on Ray (``dsv3sim.workload.sweep.run_parallel``). Design and measurements: NOTES.md.
"""
