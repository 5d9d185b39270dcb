"""Gauge fields and the Wilson gauge action.

- :mod:`.field`       -- :class:`GaugeField`: links with a halo; cold, hot and near-identity starts.
- :mod:`.observables` -- plaquette (total, spatial, temporal), link trace, Polyakov loop.
- :mod:`.action`      -- staples, Wilson action, gauge force.
- :mod:`.transform`   -- random gauge transformations and their action on links.
- :mod:`.topology`    -- clover field strength, clover energy density, topological charge.
- :mod:`.flow`        -- Wilson (gradient) flow (Luscher's RK3), E(t), t^2 E(t), t0.
"""

from .field import GaugeField
from .observables import plaquette, link_trace, polyakov_loop, measure_all
from .action import staple_sum, wilson_action, gauge_force
from .transform import random_gauge_transformation, gauge_transform
from .topology import (clover_field_strength, energy_density_clover, topological_charge,
                       topological_charge_density)
from .flow import (FlowError, FlowResult, energy_density_plaquette, find_t0, flow_generator,
                   flow_observables, flow_step, t0_from_history, wilson_flow)

__all__ = ["GaugeField", "plaquette", "link_trace", "polyakov_loop", "measure_all", "staple_sum",
           "wilson_action", "gauge_force", "random_gauge_transformation", "gauge_transform",
           "clover_field_strength", "energy_density_clover", "topological_charge",
           "topological_charge_density", "FlowError", "FlowResult", "energy_density_plaquette",
           "find_t0", "flow_generator", "flow_observables", "flow_step", "t0_from_history",
           "wilson_flow"]
