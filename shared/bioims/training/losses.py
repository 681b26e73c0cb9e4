"""Contrastive losses on L2-normalised embeddings.

- :class:`Proxies` (default): cosine softmax against one learned proxy per class;
- :func:`supcon_loss`: supervised contrastive loss with several positives per anchor
  (Khosla et al., 2020), where positives are crops of *other compounds* of the anchor's class: crops of
  the anchor's own compound are left out of its softmax entirely, so the network is never rewarded for
  telling compounds of one MOA apart (compound identity is what overfits in the seed). An anchor whose
  class has no other compound in the batch (the DMSO control, a class with one training compound) uses
  its own compound's crops as positives.
- :func:`seed_pair_loss`: the seed's loss. For one anchor and one positive crop per class, a softmax
  over the anchor-to-positive similarities must pick its own class's positive. A batch holds G such
  groups of P classes, laid out (2, G, P).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, subclasses: torch.Tensor,
                temperature: float) -> torch.Tensor:
    """Mean over anchors with a positive of ``-mean_p log softmax(z_a . z_p / T)``.

    Parameters
    ----------
    z : (N, D) float tensor, L2-normalised rows
    labels, subclasses : (N,) int tensors
        Class (MOA) and compound of each crop.
    """
    n = z.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    same_label = labels[:, None] == labels[None, :]
    same_compound = subclasses[:, None] == subclasses[None, :]
    positives = same_label & ~same_compound
    fallback = ~positives.any(dim=1, keepdim=True)
    positives = torch.where(fallback, same_label & ~eye, positives)
    in_softmax = ~eye & (fallback | ~same_compound)
    logits = (z @ z.T / temperature).masked_fill(~in_softmax, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    count = positives.sum(dim=1)
    has = count > 0
    if not has.any():
        return z.sum() * 0.0
    per_anchor = -log_prob.masked_fill(~positives, 0.0).sum(dim=1)[has] / count[has]
    return per_anchor.mean()


def seed_pair_loss(z: torch.Tensor, groups: int, classes: int, temperature: float) -> torch.Tensor:
    """Cross-entropy of anchor-to-positive similarities; ``z`` is (2 * groups * classes, D), laid out
    anchors of groups 0..G-1 then positives of groups 0..G-1, each group ordered by class."""
    z = z.view(2, groups, classes, -1)
    logits = torch.einsum("gae,gpe->gap", z[0], z[1]) / temperature
    target = torch.arange(classes, device=z.device).repeat(groups)
    return F.cross_entropy(logits.reshape(groups * classes, classes), target)


class Proxies(nn.Module):
    """One learned unit vector per class (NormFace / proxy-NCA): the loss is the cross-entropy of the
    cosine similarities between each embedding and every class proxy, divided by the temperature. Each
    batch is compared with every class at once, which converges in far fewer epochs than pair losses."""

    def __init__(self, classes: int, dims: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, dims) / dims ** 0.5)

    def forward(self, z: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
        logits = z @ F.normalize(self.weight, dim=1).T / temperature
        return F.cross_entropy(logits, labels)
