"""Pattern generation (the paper's first network): Encoder1 reads the far patch, Encoder2 the near
one, a ViT decoder predicts the target patch of every triplet; its predictions make the expected image.

Its parameters are created in `PatternNet.__init__` (encoder1, encoder2, patch_pos, direction_embed,
memory_slot, query_tokens, decoder_blocks, decoder_norm, decoder_pred), so saved weights keep their names.
"""
from __future__ import annotations

import torch


class GeneratorMixin:
    """PatternNet's generator: triplets of patches -> predicted target tokens, and its training loss."""

    @property
    def num_triplets(self) -> int:
        return self.triplets.shape[0]

    def forward_encoders(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (N, P, n, Dt) -> F1, F2: (N, P, n, D), every patch through Encoder1 and Encoder2.

        Each patch is context for several triplets; encoding each once serves them all.
        """
        n_img, n_patch, n_tok, token_dim = tokens.shape
        flat = tokens.reshape(n_img * n_patch, n_tok, token_dim)
        pos = self.patch_pos.repeat(n_img, 1).unsqueeze(1)  # (N*P, 1, D)
        f1 = self.encoder1(flat, pos).reshape(n_img, n_patch, n_tok, -1)
        f2 = self.encoder2(flat, pos).reshape(n_img, n_patch, n_tok, -1)
        return f1, f2

    def forward_decoder(self, f1: torch.Tensor, f2: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        """Predict target patches. f1, f2: (N, P, n, D); which: (N, K) triplet ids -> (N, K, n, Dt)."""
        n_img, k = which.shape
        n_tok, d = f1.shape[2], f1.shape[3]
        far, near, target, direction = self.triplets[which].unbind(-1)  # each (N, K)
        batch = torch.arange(n_img, device=which.device).unsqueeze(1)
        x = self.query_tokens + (self.patch_pos[target] + self.direction_embed[direction]).unsqueeze(2)
        x = x.reshape(n_img * k, n_tok, d)  # (N*K, n, D)
        mem_far, mem_near = f1 + self.memory_slot[0], f2 + self.memory_slot[1]
        for block in self.decoder_blocks:
            # project every patch's memory once, then gather per triplet: (N, K, 2n, 2D)
            kv = torch.cat([block.memory_kv(mem_far)[batch, far], block.memory_kv(mem_near)[batch, near]], dim=2)
            x = block(x, kv.reshape(n_img * k, 2 * n_tok, 2 * d))
        return self.decoder_pred(self.decoder_norm(x)).reshape(n_img, k, n_tok, -1)

    def predict_triplets(self, tokens: torch.Tensor) -> torch.Tensor:
        """Every triplet's prediction: tokens (N, P, n, Dt) -> predicted target tokens (N, T, n, Dt)."""
        which = torch.arange(self.num_triplets, device=tokens.device).expand(tokens.shape[0], -1)
        return self.forward_decoder(*self.forward_encoders(tokens), which)

    def assemble_expected(self, pred: torch.Tensor) -> torch.Tensor:
        """Predicted tokens of all T triplets (N, T, n, Dt) -> the expected image (N, 3, S, S) in [0, 1].

        Each patch is the mean of its predictions; a patch no direction reaches is left mid-grey.
        """
        target = self.triplets[:, 2]
        n_patch = self.cfg.grid ** 2
        total = pred.new_zeros(pred.shape[0], n_patch, *pred.shape[2:]).index_add_(1, target, pred)
        count = torch.bincount(target, minlength=n_patch).clamp(min=1).to(pred.dtype)
        return self.unpatchify(total / count.view(1, -1, 1, 1)).clamp(0, 1)

    def sample_triplets(self, n_img: int, k: int, device=None) -> torch.Tensor:
        """K distinct random triplet ids per image: (N, K)."""
        k = min(k, self.num_triplets)
        return torch.rand(n_img, self.num_triplets, device=device).argsort(dim=1)[:, :k]

    def generator_loss(self, clean: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        """Stage 1, pattern generation: pixel loss (L1 + L2) of the predicted target patches.

        clean: (N, 3, S, S) normal images in [0, 1]; which: (N, K) triplet ids.
        """
        tokens = self.patchify(clean)
        pred = self.forward_decoder(*self.forward_encoders(tokens), which)
        real = tokens[torch.arange(len(which), device=which.device).unsqueeze(1), self.triplets[which, 2]]
        return (pred - real).abs().mean() + (pred - real).pow(2).mean()
