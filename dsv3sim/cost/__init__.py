"""L1: the analytic cost model. Pure functions of a ModelConfig (and shapes); no torch, no simpy."""
