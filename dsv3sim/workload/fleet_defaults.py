"""The load model's shapes and default assumptions (``workload/fleet.py`` explains each), as plain constants
without numpy: the model, the planner's ``FleetQuery`` and the ``plan serve`` flags all read them here."""

SHAPES = ("flat", "sinusoid", "two-peak")
DEFAULT_SHAPE = "sinusoid"
DEFAULT_PEAK_TO_MEAN = 1.5  # assumption (no published diurnal curve for this service): vary it; NOTES tabulates
DEFAULT_SCALE_INTERVAL_H = 12.0  # Day 6: "all nodes by day, fewer at night" (a day/night split)
DEFAULT_BURST_QUANTILE = 0.99  # slots for the 99th percentile of the Poisson occupancy
