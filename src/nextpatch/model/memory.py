"""A memory of normal: the nearest good-image feature to each token, beside the paper's comparison.

The paper's comparison asks "does this patch look like what its neighbours predict?". A defect that
looks like the prediction (a smoothed-away region resembles the generator's own blur) passes that
test. The memory asks the other question, "does this token look like anything seen on good images?":
its distance is 1 - the largest cosine between the token's pretrained features and a bank of features
of the training images, reduced to a bounded coreset so that the model's size and predict time do not
grow with the training set.

Shapes: N images, L tokens per image, D feature size, M bank size.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

BANK_CHUNK = 8192  # bank rows per matrix product: bounds the (N*L, chunk) similarity block
# The coreset chooses among at most this many training tokens per bank row, drawn uniformly: fitting's
# time (the greedy coreset is linear in its candidates per row chosen) and memory then stay bounded
# however many images (or tiles) the training set has, and a variant covering a few dozen tokens is
# still kept (a token survives the draw with probability >= 8 * bank rows / training tokens).
POOL_PER_ROW = 8


def nearest_distance(feats: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """1 - max cosine to the bank: unit features (N, L, D), unit bank (M, D) -> (N, L).

    Exact brute-force search as matrix products (what faiss' IndexFlatIP does), written in torch so
    that the exported ONNX graph carries it. An empty bank gives distance 0 everywhere.
    """
    if bank.shape[0] == 0:
        return feats.new_zeros(feats.shape[:-1])
    flat = feats.reshape(-1, feats.shape[-1]).to(bank.dtype)
    best = torch.stack([(flat @ chunk.T).amax(dim=1) for chunk in bank.split(BANK_CHUNK)]).amax(dim=0)
    return (1.0 - best.float()).clamp(min=0).reshape(feats.shape[:-1])


def greedy_coreset(feats: torch.Tensor, size: int, *, seed: int = 0, projection_dim: int = 128) -> torch.Tensor:
    """Indices of `size` rows of `feats` (K, D) chosen by greedy k-center (PatchCore's coreset).

    Each step adds the row farthest from every row chosen so far, so rare normal variants are kept
    and near-duplicates dropped: the bank covers the normal features with a bounded number of rows.
    Distances are measured in a random projection to `projection_dim` dimensions (Johnson-Lindenstrauss),
    as PatchCore does, which keeps the choice fast. Returns (size,) long; all rows when K <= size.
    """
    k = feats.shape[0]
    if k <= size:
        return torch.arange(k)
    gen = torch.Generator().manual_seed(seed)
    x = feats.float()
    if x.shape[1] > projection_dim:
        x = x @ (torch.randn(x.shape[1], projection_dim, generator=gen) / projection_dim ** 0.5)
    sq = x.pow(2).sum(1)
    chosen = torch.empty(size, dtype=torch.long)
    chosen[0] = int(torch.randint(k, (1,), generator=gen))
    nearest = sq + sq[chosen[0]] - 2 * (x @ x[chosen[0]])  # squared distance to the nearest chosen row
    for i in range(1, size):
        chosen[i] = int(nearest.argmax())
        nearest = torch.minimum(nearest, sq + sq[chosen[i]] - 2 * (x @ x[chosen[i]]))
    return chosen


def build_bank(feats: torch.Tensor, size: int, *, seed: int = 0) -> torch.Tensor:
    """Training-token features (K, D) -> the memory bank (min(K, size), D), unit rows."""
    feats = F.normalize(feats.float(), dim=-1)
    return feats[greedy_coreset(feats, size, seed=seed)].contiguous()


def candidate_pool(total: int, size: int, *, seed: int = 0) -> torch.Tensor | None:
    """Which of `total` training tokens the coreset may choose from, for a bank of `size` rows:
    None (all of them) when total <= POOL_PER_ROW * size, else that many sorted indices drawn uniformly."""
    pool = POOL_PER_ROW * size
    if total <= pool:
        return None
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:pool].sort().values
