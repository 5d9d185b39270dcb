"""The job types of ``lattice-hpc run``, by ``job.type`` (each a :class:`.jobtype.JobType`)."""

from .flow import FlowJob
from .hmc import HMCJob
from .quenched import QuenchedJob

JOB_TYPES = {cls.name: cls for cls in (QuenchedJob, HMCJob, FlowJob)}
