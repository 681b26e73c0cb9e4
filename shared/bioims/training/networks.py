"""Embedding networks: (N, C, H, W) crops in [0, 1] -> (N, D) L2-normalised embeddings.

- ``resnet`` (default): a stride-2 stem and four residual stages (two 3x3 convolutions with batch
  normalisation each, stride 2 at the stage entry, widths 32-64-128-256), global average pooling, a
  linear layer to D. Normalisation layers keep training stable at the learning rates that converge in a
  few epochs on a CPU, and average pooling makes it independent of the ROI size.
- ``seed``: the seed's network: six stride-2 3x3 convolutions with ReLU (16-32-64-128-256-256
  channels), average pooling, a linear layer to D.

For z-stack specs (crops (N, C, Z, H, W)) both take the maximum projection over Z first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..contract.enums import Network
from ..errors import InvalidInput
from ..specs import MIN_ROI, EmbeddingSpec


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity() if cin == cout and stride == 1 else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class EmbeddingNet(nn.Module):
    """Base: projection of z-stacks, a backbone to (N, F, h, w), pooling, linear, L2 normalisation."""

    def __init__(self, backbone: nn.Module, features: int, embedding_length: int, depth: int) -> None:
        super().__init__()
        self.depth = depth
        self.backbone = backbone
        self.head = nn.Linear(features, embedding_length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.depth > 1:
            x = x.amax(dim=2)
        return F.normalize(self.head(self.backbone(x).mean(dim=(2, 3))), dim=1)


def resnet(channels: int, embedding_length: int, depth: int = 1,
           widths: tuple[int, ...] = (32, 64, 128, 256)) -> EmbeddingNet:
    layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]),
                               nn.ReLU()]
    cin = widths[0]
    for w in widths[1:]:
        layers.append(_Block(cin, w, 2))
        cin = w
    layers.append(_Block(cin, cin, 1))
    return EmbeddingNet(nn.Sequential(*layers), cin, embedding_length, depth)


def seed_network(channels: int, embedding_length: int, depth: int = 1) -> EmbeddingNet:
    widths = (channels, 16, 32, 64, 128, 256, 256)
    layers: list[nn.Module] = []
    for cin, cout in zip(widths, widths[1:]):
        layers += [nn.Conv2d(cin, cout, 3, 2, 1), nn.ReLU()]
    return EmbeddingNet(nn.Sequential(*layers), widths[-1], embedding_length, depth)


def build_network(spec: EmbeddingSpec) -> EmbeddingNet:
    """The spec's network with freshly initialised weights (seeded by the caller)."""
    if spec.network not in MIN_ROI:
        raise InvalidInput(f"unknown network {spec.network!r}; known: {', '.join(MIN_ROI)}")
    make = resnet if spec.network == Network.RESNET else seed_network
    return make(len(spec.input.channels), spec.embedding_length, spec.input.depth)
