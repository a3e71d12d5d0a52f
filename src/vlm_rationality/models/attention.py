"""Capturing attention probabilities *with gradients*, without touching any state_dict.

Stock open_clip blocks call `nn.MultiheadAttention(..., need_weights=False)`, which runs a fused kernel that
never materialises the probabilities; forcing weights through a hook yields a tensor autograd cannot
differentiate. So, inside a context manager, each attention module gets an explicit-softmax forward as an
*instance attribute* (the class, the parameters and the state_dict are untouched) that records the
probabilities it multiplies with the values; leaving the context deletes the attribute again. Each supported
attention class has its forward here; any other fails with a clear error before anything is patched.
"""

from __future__ import annotations

import functools
from contextlib import ExitStack, contextmanager
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from open_clip.transformer import Attention as OpenCLIPAttention
from timm.layers import Attention as TimmAttention
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
        raise NotImplementedError(
            f"attention capture does not support nn.MultiheadAttention with {', '.join(unsupported)}"
        )


def _mha_probs(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, heads: int, attn_mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention probabilities [B, heads, N, N] and values of batch-first tokens x [B, N, D]."""
    batch, tokens, _ = x.shape
    q, k, v = F.linear(x, weight, bias).chunk(3, dim=-1)
    q, k, v = (t.reshape(batch, tokens, heads, -1).transpose(1, 2) for t in (q, k, v))
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    if attn_mask is not None:
        scores = scores + attn_mask
    return scores.softmax(dim=-1), v


def _mha_attend(probs: torch.Tensor, v: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The output projection of the probability-weighted values, [B, N, D]."""
    batch, _, tokens, _ = probs.shape
    return F.linear((probs @ v).transpose(1, 2).reshape(batch, tokens, -1), weight, bias)


@functools.cache
def _compiled(function: Callable) -> Callable:
    """`function` through torch.compile, built once per process and shared by every block (same code, other weights)."""
    return torch.compile(function, dynamic=None)


def _explicit_mha_forward(module: nn.MultiheadAttention, record: Recorder, compiled: bool = False) -> Callable:
    """The self-attention forward of `module`, computed with an explicit softmax that is recorded.

    `compiled`: each half runs through torch.compile. The recorded probabilities are where one compiled region ends
    and the next begins, so the gradient a heatmap takes with respect to them still exists: compiling across
    them would fuse them away.
    """
    heads = module.num_heads
    probs_of, attend = (_compiled(_mha_probs), _compiled(_mha_attend)) if compiled else (_mha_probs, _mha_attend)

    def forward(
        query,
        key=None,
        value=None,
        key_padding_mask=None,
        need_weights=True,
        attn_mask=None,
        average_attn_weights=True,
        is_causal=False,
    ):
        if (key is not None and key is not query) or (value is not None and value is not query):
            raise NotImplementedError("attention capture supports self-attention only (key = value = query)")
        if key_padding_mask is not None:
            raise NotImplementedError("attention capture does not support key_padding_mask")
        x = query if module.batch_first else query.transpose(0, 1)
        if attn_mask is not None:
            if attn_mask.dim() != 2:
                raise NotImplementedError("attention capture supports 2-D attention masks only")
            if attn_mask.dtype == torch.bool:
                attn_mask = torch.zeros_like(attn_mask, dtype=x.dtype).masked_fill(attn_mask, float("-inf"))
        probs, v = probs_of(x, module.in_proj_weight, module.in_proj_bias, heads, attn_mask)
        record(probs)
        if module.training and module.dropout > 0:
            probs = F.dropout(probs, module.dropout)
        out = attend(probs, v, module.out_proj.weight, module.out_proj.bias)
        out = out if module.batch_first else out.transpose(0, 1)
        return out, (probs.mean(1) if average_attn_weights else probs) if need_weights else None

    return forward


def _explicit_open_clip_attention_forward(module: nn.Module, record: Recorder) -> Callable:
    """open_clip's custom `Attention` (qk-norm, scaled-cosine, head-scale variants) with a recorded softmax.

    Its own non-SDPA branch multiplies 4-D tensors with `torch.bmm` and fails (open_clip 3.3.0), so the
    probabilities are computed here from the module's own weights and sub-layers.
    """

    def forward(x, attn_mask=None):
        if attn_mask is not None:
            raise NotImplementedError("attention capture does not support masks in open_clip's custom Attention")
        batch, tokens, width = x.shape
        q, k, v = F.linear(x, module.in_proj_weight, module.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (t.reshape(batch, tokens, module.num_heads, -1).transpose(1, 2) for t in (q, k, v))
        if module.logit_scale is not None:
            scale = torch.clamp(module.logit_scale, max=module.logit_scale_max).exp()
            scores = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-1, -2) * scale
        else:
            scores = (module.ln_q(q) * module.scale) @ module.ln_k(k).transpose(-1, -2)
        probs = scores.softmax(dim=-1)
        record(probs)
        out = module.attn_drop(probs) @ v
        if module.head_scale is not None:
            out = out * module.head_scale
        out = module.ln_inner(out.transpose(1, 2).reshape(batch, tokens, width))
        return module.out_drop(module.out_proj(out))

    return forward


def _explicit_timm_attention_forward(module: nn.Module, record: Recorder) -> Callable:
    """timm's ViT `Attention` (the ALBEF/BLIP image towers): its fused SDPA path never materialises the
    probabilities, so they are computed here from the module's own weights and sub-layers."""

    def forward(x, attn_mask=None, is_causal=False):
        if attn_mask is not None or is_causal:
            raise NotImplementedError("attention capture does not support masks in timm's Attention")
        batch, tokens, _ = x.shape
        gate = module.gate(x).sigmoid() if getattr(module, "gate", None) is not None else None
        qkv = module.qkv(x).reshape(batch, tokens, 3, module.num_heads, module.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        probs = ((module.q_norm(q) * module.scale) @ module.k_norm(k).transpose(-2, -1)).softmax(dim=-1)
        record(probs)
        out = module.norm((module.attn_drop(probs) @ v).transpose(1, 2).reshape(batch, tokens, -1))
        if gate is not None:
            out = out * gate
        return module.proj_drop(module.proj(out))

    return forward


@contextmanager
def _patched(module: nn.Module, forward: Callable) -> Iterator[None]:
    module.forward = forward  # an instance attribute shadows the class method; weights are untouched
    try:
        yield
    finally:
        del module.forward


def _forward_factory(attn: nn.Module, compiled: bool = False) -> Callable[[nn.Module, Recorder], Callable]:
    if isinstance(attn, nn.MultiheadAttention):
        _check_mha(attn)
        return functools.partial(_explicit_mha_forward, compiled=compiled)
    if compiled:
        raise NotImplementedError(
            f"heatmaps.compile supports nn.MultiheadAttention (open_clip's CLIP ViTs), not "
            f"{type(attn).__module__}.{type(attn).__name__}; leave compile out for this model"
        )
    if isinstance(attn, OpenCLIPAttention):
        return _explicit_open_clip_attention_forward
    if isinstance(attn, TimmAttention):
        return _explicit_timm_attention_forward
    raise NotImplementedError(
        f"no attention probe for {type(attn).__module__}.{type(attn).__name__}; "
        "add one in vlm_rationality/models/attention.py"
    )


@contextmanager
def capture_attention(attention_modules: Sequence[nn.Module], compiled: bool = False) -> Iterator[list[torch.Tensor]]:
    """Record the probabilities [B, heads, N, N] of each module, in call order, into the yielded list; `compiled`:
    the attention runs through torch.compile (see `_explicit_mha_forward`)."""
    factories = [_forward_factory(attn, compiled) for attn in attention_modules]  # fail before patching anything
    recorded: list[torch.Tensor] = []
    with ExitStack() as stack:
        for factory, attn in zip(factories, attention_modules):
            stack.enter_context(_patched(attn, factory(attn, recorded.append)))
        yield recorded
