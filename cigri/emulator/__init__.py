"""The OAR REST API emulator: one process serving several emulated OAR 2.5.9 clusters, whose jobs
really run (execute mode) or are simulated from a workload model (simulate mode). A product
feature (`cigri-oar-emulator`) and the grid every test runs on."""

from cigri.emulator.api import OarApp
from cigri.emulator.clock import EmuClock, ManualClock, ScaledClock
from cigri.emulator.http import Faults
from cigri.emulator.jobs import ClusterConfig
from cigri.emulator.model import Cluster
from cigri.emulator.server import ClusterControl, Emulator, EmulatorHandle, build, run_in_thread
from cigri.emulator.workload import Workload

__all__ = [
    "Cluster",
    "ClusterConfig",
    "ClusterControl",
    "EmuClock",
    "Emulator",
    "EmulatorHandle",
    "Faults",
    "ManualClock",
    "OarApp",
    "ScaledClock",
    "Workload",
    "build",
    "run_in_thread",
]
