"""Exponential moving average of a model's weights: the weights that get saved and shipped."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """`shadow` is a frozen copy of the model; after each optimiser step
        shadow <- d · shadow + (1 - d) · weights,  d = min(decay, (1 + n) / (10 + n))
    where n counts the updates so far, so early on, when the weights move fast, the average
    follows them instead of remembering the random init. Buffers are copied as they are."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        for average, weight in zip(self.shadow.parameters(), model.parameters()):
            average.lerp_(weight.detach(), 1.0 - d)
        for average, buffer in zip(self.shadow.buffers(), model.buffers()):
            average.copy_(buffer)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.updates = state["decay"], state["updates"]
        self.shadow.load_state_dict(state["shadow"])
