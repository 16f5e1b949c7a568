"""The dense kernel: scaled_dot_product_attention with the whole (heads, N, N) bias as its additive
mask, padded keys at -inf; fused kernels where the platform has them."""
from typing import Optional

import torch
import torch.nn.functional as F


def dense_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor,
                    key_padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """softmax(q kᵀ / √d + bias) v for (B, heads, N, d) q, k, v and a (heads, N, N) bias;
    ``key_padding_mask``: optional (B, N) bool, True at keys no query may attend to."""
    mask = bias.to(q.dtype).unsqueeze(0)
    if key_padding_mask is not None:
        hidden = torch.zeros(key_padding_mask.shape, dtype=q.dtype, device=q.device)
        hidden.masked_fill_(key_padding_mask, float('-inf'))
        mask = mask + hidden[:, None, None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
