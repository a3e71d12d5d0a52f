"""Capturing attention probabilities *with gradients*, without touching any state_dict.

Stock open_clip blocks call `nn.MultiheadAttention(..., need_weights=False)`, which runs a fused kernel that
never materialises the probabilities; forcing weights through a hook yields a tensor autograd cannot
differentiate. So, inside a context manager, each attention module gets an explicit-softmax forward as an
*instance attribute* (the class, the parameters and the state_dict are untouched) that records the
probabilities it multiplies with the values; leaving the context deletes the attribute again.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

Recorder = Callable[[torch.Tensor], None]


def _check_mha(module: nn.MultiheadAttention) -> None:
    unsupported = []
    if not module._qkv_same_embed_dim:
        unsupported.append("separate q/k/v projections")
    if module.bias_k is not None or module.bias_v is not None:
        unsupported.append("bias_k/bias_v")
    if module.add_zero_attn:
        unsupported.append("add_zero_attn")
    if unsupported:
        raise NotImplementedError(f"attention capture does not support nn.MultiheadAttention with {', '.join(unsupported)}")


def _explicit_mha_forward(module: nn.MultiheadAttention, record: Recorder) -> Callable:
    """The self-attention forward of `module`, computed with an explicit softmax that is recorded."""
    heads = module.num_heads

    def forward(query, key=None, value=None, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        if (key is not None and key is not query) or (value is not None and value is not query):
            raise NotImplementedError("attention capture supports self-attention only (key = value = query)")
        if key_padding_mask is not None:
            raise NotImplementedError("attention capture does not support key_padding_mask")
        x = query if module.batch_first else query.transpose(0, 1)
        batch, tokens, width = x.shape
        q, k, v = F.linear(x, module.in_proj_weight, module.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (t.reshape(batch, tokens, heads, -1).transpose(1, 2) for t in (q, k, v))
        scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
        if attn_mask is not None:
            if attn_mask.dim() != 2:
                raise NotImplementedError("attention capture supports 2-D attention masks only")
            if attn_mask.dtype == torch.bool:
                attn_mask = torch.zeros_like(attn_mask, dtype=scores.dtype).masked_fill(attn_mask, float("-inf"))
            scores = scores + attn_mask
        probs = scores.softmax(dim=-1)
        record(probs)
        if module.training and module.dropout > 0:
            probs = F.dropout(probs, module.dropout)
        out = module.out_proj((probs @ v).transpose(1, 2).reshape(batch, tokens, width))
        out = out if module.batch_first else out.transpose(0, 1)
        return out, (probs.mean(1) if average_attn_weights else probs) if need_weights else None

    return forward


@contextmanager
def _patched_mha(module: nn.MultiheadAttention, record: Recorder) -> Iterator[None]:
    _check_mha(module)
    module.forward = _explicit_mha_forward(module, record)  # instance attribute shadows the class method
    try:
        yield
    finally:
        del module.forward


@contextmanager
def _probed_open_clip_attention(module: nn.Module, record: Recorder) -> Iterator[None]:
    """open_clip's custom `Attention` passes its probabilities through `attn_drop`; record them there,
    with the fused SDPA path switched off so that they exist."""
    use_fsdpa = module.use_fsdpa
    module.use_fsdpa = False
    handle = module.attn_drop.register_forward_hook(lambda _m, _i, out: record(out))
    try:
        yield
    finally:
        handle.remove()
        module.use_fsdpa = use_fsdpa


def _probe_for(attn: nn.Module) -> Callable[[nn.Module, Recorder], object]:
    if isinstance(attn, nn.MultiheadAttention):
        return _patched_mha
    if type(attn).__name__ == "Attention" and hasattr(attn, "attn_drop") and hasattr(attn, "use_fsdpa"):
        return _probed_open_clip_attention
    raise NotImplementedError(
        f"no attention probe for {type(attn).__module__}.{type(attn).__name__}; "
        "add one in vlm_rationality/models/attention.py"
    )


@contextmanager
def capture_attention(attention_modules: Sequence[nn.Module]) -> Iterator[list[torch.Tensor]]:
    """Record the probabilities [B, heads, N, N] of each module, in call order, into the yielded list."""
    probes = [_probe_for(attn) for attn in attention_modules]  # fail before patching anything
    recorded: list[torch.Tensor] = []
    with ExitStack() as stack:
        for probe, attn in zip(probes, attention_modules):
            stack.enter_context(probe(attn, recorded.append))
        yield recorded
