"""The Python examples of the README and the user guide run, in order, as a reader would.

Each page's ``python`` blocks run one after the other in one namespace. A page's examples use
objects a reader already has (``actor``, ``collector``, ``logger``, ...): the setup code
below builds small real ones before the page's first block, or just before the block that
needs them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_CARTPOLE_PPO = """
import torch
from tensordict.nn import TensorDictModule
from torchrl.collectors import Collector
from torchrl.envs import GymEnv
from torchrl.modules import MLP, ProbabilisticActor, ValueOperator
from torchrl.objectives.value import GAE
from torchrl.record.loggers import CSVLogger

torch.manual_seed(0)
env = GymEnv("CartPole-v1")
actor = ProbabilisticActor(
    TensorDictModule(MLP(in_features=4, out_features=2, num_cells=[32]), ["observation"],
                     ["logits"]),
    in_keys=["logits"], spec=env.action_spec, return_log_prob=True,
    distribution_class=torch.distributions.OneHotCategorical,
)
critic = ValueOperator(MLP(in_features=4, out_features=1, num_cells=[32]), ["observation"])
collector = Collector(
    env, actor, frames_per_batch=64, total_frames=128, auto_register_policy_transforms=False
)
advantage = GAE(gamma=0.99, lmbda=0.95, value_network=critic)
total_updates = 1_000
logger = CSVLogger("docs", log_dir="logs")
"""

_TINY_TRAINING = """
net = torch.nn.Sequential(torch.nn.Linear(4, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)

def train(net, optimizer, sparsifier):
    for _ in range(3):
        optimizer.zero_grad()
        net(torch.randn(32, 4)).square().mean().backward()
        optimizer.step()
        sparsifier.step()
"""

_MT3_COLLECTOR = """
collector = Collector(
    env, actor, frames_per_batch=2_016, total_frames=10_080, auto_register_policy_transforms=False
)
"""

_PCGRAD_MINIBATCHES = """
from torchrl.objectives.value import GAE

GAE(gamma=0.99, lmbda=0.95, value_network=critic)(batch)
minibatches = batch.reshape(-1)[torch.randperm(batch.numel())].split(256)[:2]
"""

# page -> setup before its first block
PAGE_SETUP = {
    "README.md": _CARTPOLE_PPO,
    "docs/guide/sparse.md": _CARTPOLE_PPO,
    "docs/guide/plasticity.md": "from torchrl.record.loggers import CSVLogger\n"
    'logger = CSVLogger("docs", log_dir="logs")\n',
}
# (page, block index) -> setup just before that block
BLOCK_SETUP = {
    ("docs/guide/sparse.md", 4): _TINY_TRAINING,
    ("docs/guide/environments.md", 3): "policy = None  # random actions\n",
    ("docs/guide/plasticity.md", 3): _MT3_COLLECTOR,
    ("docs/guide/plasticity.md", 4): _PCGRAD_MINIBATCHES,
}
PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("docs/guide/*.md"))]


def python_blocks(page: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", (ROOT / page).read_text(), re.S | re.M)


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)])
def test_page_examples_run(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples may write logs
    namespace: dict[str, object] = {"__name__": "__docs__"}
    exec(compile(PAGE_SETUP.get(page, ""), f"{page} (setup)", "exec"), namespace)
    for index, block in enumerate(python_blocks(page)):
        setup = BLOCK_SETUP.get((page, index), "")
        exec(compile(setup, f"{page} (setup of block {index})", "exec"), namespace)
        exec(compile(block, f"{page} (block {index})", "exec"), namespace)


def test_every_setup_names_a_block() -> None:
    # a renamed page or a removed block must not leave setup code silently unused
    for page in PAGE_SETUP:
        assert python_blocks(page), page
    for page, index in BLOCK_SETUP:
        assert index < len(python_blocks(page)), (page, index)
