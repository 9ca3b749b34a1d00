"""Network building blocks: encoders, multi-head, MoE, MOORE, scaling, builders, Q-networks."""

from torchrl_sparse.modules.builders import (
    LAYER_NORM_PLACEMENTS,
    MINIGRID_ARCHITECTURES,
    SAC_ARCHITECTURES,
    make_minigrid_network,
    make_ppo_actor,
    make_ppo_critic,
    make_sac_actor,
    make_sac_network,
    make_sac_qvalue,
)
from torchrl_sparse.modules.control import ControlPolicy, make_control_actor
from torchrl_sparse.modules.encoders import MLP, MiniGridCNN
from torchrl_sparse.modules.heads import MultiHead, task_onehot
from torchrl_sparse.modules.mixture import MOORE, MixtureOfExperts, MoE, gram_schmidt
from torchrl_sparse.modules.networks import MultiTaskNetwork
from torchrl_sparse.modules.qnets import (
    QNETWORKS,
    MinAtarQNetwork,
    NatureQNetwork,
    make_qvalue_actor,
)
from torchrl_sparse.modules.scaling import count_parameters, match_width, multihead_mlp_param_count
from torchrl_sparse.modules.temperature import TaskTemperature

__all__ = [
    "LAYER_NORM_PLACEMENTS",
    "MINIGRID_ARCHITECTURES",
    "MLP",
    "MOORE",
    "QNETWORKS",
    "SAC_ARCHITECTURES",
    "ControlPolicy",
    "MinAtarQNetwork",
    "MiniGridCNN",
    "MixtureOfExperts",
    "MoE",
    "MultiHead",
    "MultiTaskNetwork",
    "NatureQNetwork",
    "TaskTemperature",
    "count_parameters",
    "gram_schmidt",
    "make_control_actor",
    "make_minigrid_network",
    "make_ppo_actor",
    "make_ppo_critic",
    "make_qvalue_actor",
    "make_sac_actor",
    "make_sac_network",
    "make_sac_qvalue",
    "match_width",
    "multihead_mlp_param_count",
    "task_onehot",
]
