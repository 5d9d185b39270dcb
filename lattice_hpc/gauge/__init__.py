"""Gauge fields and the Wilson gauge action.

- :mod:`.field`       -- :class:`GaugeField`: links with a halo; cold, hot and near-identity starts.
- :mod:`.observables` -- plaquette (total, spatial, temporal), link trace, Polyakov loop.
- :mod:`.action`      -- staples, Wilson action, gauge force.
- :mod:`.transform`   -- random gauge transformations and their action on links.
"""

from .field import GaugeField
from .observables import plaquette, link_trace, polyakov_loop, measure_all
from .action import staple_sum, wilson_action, gauge_force
from .transform import random_gauge_transformation, gauge_transform

__all__ = ["GaugeField", "plaquette", "link_trace", "polyakov_loop", "measure_all", "staple_sum",
           "wilson_action", "gauge_force", "random_gauge_transformation", "gauge_transform"]
