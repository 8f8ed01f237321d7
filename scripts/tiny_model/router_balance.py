"""Auxiliary-loss-free expert balancing (DeepSeek-V3, used by GLM-4.5): nudge each router's selection bias.

After every optimizer step, each MoE router's `e_score_correction_bias` moves by `rate` toward under-used experts:
bias_e += rate * sign(mean_load - load_e). The bias only chooses experts (the weights stay the unbiased scores), so
this keeps all experts in use without a loss term. Loads are counted by forward hooks on the routers.
"""

from __future__ import annotations

import torch

from engine.model import Glm4MoeForCausalLM, Router


class RouterBalancer:
    def __init__(self, model: Glm4MoeForCausalLM, rate: float = 1e-3) -> None:
        self.rate = rate
        self.routers = [m for m in model.modules() if isinstance(m, Router)]
        self.loads = {id(r): torch.zeros(r.e_score_correction_bias.numel()) for r in self.routers}
        self.last_loads: list[torch.Tensor] = []
        for router in self.routers:
            router.register_forward_hook(self._count)

    def _count(self, router: Router, inputs: tuple, output: tuple[torch.Tensor, torch.Tensor]) -> None:
        if router.training:
            topk_ids = output[0]
            self.loads[id(router)] += torch.bincount(topk_ids.reshape(-1), minlength=self.loads[id(router)].numel())

    @torch.no_grad()
    def update(self) -> None:
        self.last_loads = []
        for router in self.routers:
            load = self.loads[id(router)]
            router.e_score_correction_bias += self.rate * torch.sign(load.mean() - load)
            self.last_loads.append(load.clone())
            load.zero_()

    def imbalance(self) -> str:
        """max/min expert load per router at the last update ('inf' when an expert got nothing)."""
        ratios = [float(l.max() / l.min()) if l.min() > 0 else float("inf") for l in self.last_loads]
        return "[" + " ".join(f"{r:.1f}" for r in ratios) + "]"
