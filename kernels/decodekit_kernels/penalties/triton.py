"""Triton kernels for ``penalties``: atomic counts per (row, token), then one pass over V."""

from __future__ import annotations

import torch

from decodekit_kernels._triton import tl, triton, triton_interpret

BLOCK_T = 256
BLOCK_V = 2048


@triton.jit
def _count_kernel(
    ids_ptr, ids_stride, mask_ptr, mask_stride, prompt_ptr, seen_ptr, gen_ptr, T, V,
    BLOCK_T: tl.constexpr,
):
    row = tl.program_id(0)
    pos = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
    inside = pos < T
    valid = tl.load(mask_ptr + row * mask_stride + pos, mask=inside, other=0) != 0
    token = tl.load(ids_ptr + row * ids_stride + pos, mask=inside, other=0).to(tl.int64)
    prompt = tl.load(prompt_ptr + row)
    base = row.to(tl.int64) * V
    tl.atomic_add(seen_ptr + base + token, 1, mask=inside & valid)
    tl.atomic_add(gen_ptr + base + token, 1, mask=inside & valid & (pos >= prompt))


@triton.jit
def _apply_kernel(
    logits_ptr, stride_row, stride_col, out_ptr, seen_ptr, gen_ptr, rep_ptr, pres_ptr, freq_ptr,
    V, BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0)
    tok = tl.program_id(1) * BLOCK_V + tl.arange(0, BLOCK_V)
    inside = tok < V
    x = tl.load(logits_ptr + row.to(tl.int64) * stride_row + tok * stride_col, mask=inside,
                other=0.0).to(tl.float32)
    seen = tl.load(seen_ptr + row.to(tl.int64) * V + tok, mask=inside, other=0)
    gen = tl.load(gen_ptr + row.to(tl.int64) * V + tok, mask=inside, other=0)
    rep = tl.load(rep_ptr + row)
    x = tl.where(seen > 0, tl.where(x > 0, x / rep, x * rep), x)
    x = x - ((gen > 0).to(tl.float32) * tl.load(pres_ptr + row)
             + gen.to(tl.float32) * tl.load(freq_ptr + row))
    tl.store(out_ptr + row.to(tl.int64) * V + tok, x.to(out_ptr.dtype.element_ty), mask=inside)


def penalties(
    logits, token_ids, history_mask, prompt_lengths, repetition, presence, frequency, *,
    base=None,
):
    """Penalized copy of ``logits``; ``base`` (int32 ``[rows, V]`` each) holds starting counts."""
    rows, vocab = logits.shape
    width = token_ids.shape[1]
    if base is None:
        seen = torch.zeros((rows, vocab), dtype=torch.int32, device=logits.device)
        gen = torch.zeros_like(seen)
    else:  # fresh tensors (the dispatcher's): the count kernel adds to them
        seen, gen = base[0].contiguous(), base[1].contiguous()
    ids = token_ids.contiguous()
    mask = history_mask.to(torch.int8).contiguous()
    if width:
        _count_kernel[(rows, triton.cdiv(width, BLOCK_T))](
            ids, ids.stride(0), mask, mask.stride(0), prompt_lengths, seen, gen, width, vocab,
            BLOCK_T=BLOCK_T,
        )
    # The interpreter truncates float32 -> bfloat16 instead of rounding to nearest even
    # (CUDA rounds); there the kernel writes float32 and torch rounds.
    rounds_badly = triton_interpret and logits.dtype == torch.bfloat16
    out_dtype = torch.float32 if rounds_badly else logits.dtype
    out = torch.empty((rows, vocab), dtype=out_dtype, device=logits.device)
    block = min(BLOCK_V, triton.next_power_of_2(vocab))
    _apply_kernel[(rows, triton.cdiv(vocab, block))](
        logits, logits.stride(0), logits.stride(1), out, seen, gen, repetition, presence,
        frequency, vocab, BLOCK_V=block,
    )
    return out.to(logits.dtype)
