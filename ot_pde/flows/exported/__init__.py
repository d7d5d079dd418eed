"""Trained flows loaded from exported checkpoints and evaluated without PyTorch (a library).

The checkpoint format and its checks (:mod:`.checkpoint`), and the models evaluated in numpy/numba
(:mod:`.models`: RealNVP coupling flows, OT-Flow, Monge-Ampère potentials).
"""
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .models import CouplingFlow, MongeAmpere, OTFlow, build_flow, flow_from_file

__all__ = ["Checkpoint", "CouplingFlow", "MongeAmpere", "OTFlow", "build_flow", "flow_from_file",
           "load_checkpoint", "save_checkpoint"]
