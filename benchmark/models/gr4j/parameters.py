"""GR4J's parameter table (see docs/gr4j.md) and the fixed constants of its state-space form.

Ranges of X1..X4: the approximate 80 % confidence intervals of the parameters calibrated on 429
catchments by Perrin, Michel and Andréassian (2003, J. Hydrol. 279:275-289), the ranges GR4J is
commonly calibrated in at the scale of large-sample data sets such as CAMELS. The snow
parameters are HBV's (the snow routine is shared). The order is the network's output order.
"""

from __future__ import annotations

from benchmark.models.base import ParameterSpec, parameter_table
from benchmark.models.snow import SNOW_PARAMETERS

GR4J_PARAMETERS: dict[str, ParameterSpec] = parameter_table(
    ParameterSpec("X1", 100.0, 1200.0, "mm", "production store capacity"),
    ParameterSpec("X2", -5.0, 3.0, "mm/d", "groundwater exchange coefficient"),
    ParameterSpec("X3", 20.0, 300.0, "mm", "routing store capacity (one-day reference)"),
    ParameterSpec("X4", 1.1, 2.9, "d", "unit-hydrograph time base"),
    *SNOW_PARAMETERS.values(),
)

N_UH1 = 11
"""Storages of the Nash cascade standing for unit hydrograph 1 (Santos et al. 2018 use 11)."""
N_UH2 = 8
"""Storages of the cascade standing for unit hydrograph 2."""
UH1_MEAN = 5.0 / 7.0
"""Mean travel time of GR4J's UH1 in units of X4: its S-curve (t/X4)^(5/2) on [0, X4]."""
UH2_MEAN = 1.0
"""Mean travel time of GR4J's UH2 in units of X4 (symmetric on [0, 2 X4])."""
UH1_SHARE = 0.9
"""Share of the effective rainfall routed through UH1 and the routing store (the rest: UH2, direct)."""
PERC_COEF = (4.0 / 9.0) ** 4 / 4.0
"""Percolation Perc = PERC_COEF X1 (S/X1)^5 (mm/day): GR4J's daily percolation as a rate."""
EXCHANGE_EXPONENT = 3.5
"""Exchange F = X2 (R/X3)^3.5 (mm/day)."""
ROUTING_EXPONENT = 5.0
"""Routing outflow Qr = X3/4 (R/X3)^5 (mm/day): GR4J's daily routing outflow as a rate."""
