"""Budget fitting: the pruner and the allocator land under the byte budget with the fewest changes."""

from __future__ import annotations

import pytest
import torch

from golf.compress.codecs import Codec, Lzma
from golf.quant.fit import ByteBudget, allocate_bits, fit_floor, prune_to_fit, sensitivities
from golf.quant.quantizer import Quantizer


class NonZeroBytes(Codec):
    """A test codec whose output is the payload's non-zero bytes: size is exactly monotone (each zeroed
    int8 entry saves one byte), so the fewest changes are known in closed form."""

    base = "raw"

    def _compress(self, data: bytes) -> bytes:
        return bytes(b for b in data if b)


def _state(layers: int = 4, width: int = 128) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {f"blocks.{i}.{n}.weight": torch.randn(width, width, generator=g) * 0.02 * (i + 1)
            for i in range(layers) for n in ("attn.c_q", "mlp.fc")}


def test_pruner_zeroes_exactly_the_fewest_cheapest_entries():
    q = Quantizer(matrix_bits=6, method="lite", keep_float_max_numel=0).quantize(_state())
    codec = NonZeroBytes()
    start = ByteBudget(10**9, 100, codec).total(q)
    over = 777
    budget = ByteBudget(start - over, 100, codec)
    pruned, blob, info = prune_to_fit(q, budget, max_abs=1)
    assert info["fits"] and info["fewest_found"] and info["pruned"] == over and info["bytes_after"] == budget.limit
    assert blob == budget.encode(pruned)  # the chosen state's encoding is handed back, not compressed again
    changed = cost = 0
    for m in q.meta.values():
        before, after = q.tensors[m["q"]], pruned.tensors[m["q"]]
        diff = before != after
        changed += int(diff.sum())
        assert torch.all(after[diff] == 0) and torch.all(before[diff].abs() == 1)  # only +-1, set to 0
        s = q.tensors[m["scale"]].float()[:, None].expand_as(before)
        cost = max(cost, float(s[diff].max() ** 2)) if diff.any() else cost
    assert changed == over
    # The cheapest first: every +-1 entry left has a cost at least that of every one pruned.
    left = [q.tensors[m["scale"]].float()[:, None].expand_as(pruned.tensors[m["q"]])[pruned.tensors[m["q"]].abs() == 1]
            for m in q.meta.values()]
    assert min(float(t.min() ** 2) for t in left if t.numel()) >= cost - 1e-12


def test_pruner_with_a_real_codec_lands_under_the_budget_and_reports_when_it_cannot():
    q = Quantizer(matrix_bits=6, method="lite", keep_float_max_numel=0).quantize(_state(width=256))
    codec = Lzma(preset=6, shuffle=2)
    start = ByteBudget(10**9, 1000, codec).total(q)
    budget = ByteBudget(int(start * 0.98), 1000, codec)
    pruned, blob, info = prune_to_fit(q, budget, max_abs=2)
    assert info["fits"] and budget.code_bytes + len(blob) <= budget.limit and 0 < info["pruned"] < info["candidates"]
    assert blob == budget.encode(pruned) and info["real_compressions"] <= 2 + 6 and info["headroom"] >= 0
    same, _, noop = prune_to_fit(q, ByteBudget(10**9, 1000, codec))
    assert same is q and noop["pruned"] == 0 and noop["fits"]
    _, _, impossible = prune_to_fit(q, ByteBudget(1000, 1000, codec), max_abs=1)
    assert not impossible["fits"] and impossible["pruned"] == impossible["candidates"] and impossible["headroom"] < 0


def test_allocator_promotes_the_most_sensitive_groups_until_the_budget_is_full():
    state = _state()
    hessians = {n: torch.eye(128) * (1 + i) for i, n in enumerate(sorted(state, key=lambda n: (n.split(".")[1], n)))}
    sens = sensitivities(hessians)
    order = sorted(sens, key=lambda g: -sens[g])
    quantizer = Quantizer(matrix_bits=5, method="lite", keep_float_max_numel=0)
    codec = NonZeroBytes()
    base = ByteBudget(10**9, 0, codec).total(quantizer.quantize(state))
    budget = ByteBudget(int(base * 1.12), 0, codec)
    bits, info = allocate_bits(state, hessians, quantizer, budget, base_bits=5, max_bits=7, headroom=0.0)
    groups = info["groups"]
    promoted = [g for g in order if groups[g]["bits"] > 5]
    assert promoted and promoted == order[: len(promoted)] and len(promoted) < len(order)  # a prefix, not all
    assert groups[order[0]]["bits"] == 7 and all(groups[g]["bits"] == 6 for g in promoted[1:])
    real = budget.total(quantizer.quantize(state, bits=bits))
    assert real <= budget.limit and info["estimated_model_bytes"] == pytest.approx(real, rel=0.01)
    # Full: one more promotion (the next group by sensitivity) would not have fitted.
    nxt = order[len(promoted)]
    more = {n: (6 if n.startswith(f"blocks.{nxt[5:].split('.')[0]}.") and nxt.split(".")[1] in n else b)
            for n, b in bits.items()}
    assert budget.total(quantizer.quantize(state, bits=more)) > budget.limit


def test_fitting_options_are_checked():
    with pytest.raises(ValueError, match="quant.allocate_max_bits must be above quant.matrix_bits=6"):
        Quantizer(matrix_bits=6, allocate_max_bits=5)
    with pytest.raises(ValueError, match="quant.prune_max_abs"):
        Quantizer(prune_max_abs=3)
    assert Quantizer(matrix_bits=5, method="lite", allocate_max_bits=7).needs_hessians
    # Floor fitting is on by default and composes with the allocation; a grid without a floor has none to fit.
    assert Quantizer().fit.floor and Quantizer(matrix_bits=5, allocate_max_bits=7).fit.floor
    assert not Quantizer(scale_floor=0).fit.floor and not Quantizer(fit_scale_floor=False).fit.floor


def test_floor_fitting_lowers_the_floor_as_far_as_the_budget_allows():
    """Every row of _state is under the records' floor (|w| < 1). With a limit halfway between the artifact at
    the full floor and without one, the fitted factor lands strictly inside, its artifact under the limit,
    and a floor 10% lower would not have fitted the target; the rows' scales are the fitted floor."""
    state = _state(width=256)
    quantizer = Quantizer(matrix_bits=6, method="lite", keep_float_max_numel=0)
    codec = Lzma(preset=6)
    sizes = [ByteBudget(10**9, 0, codec).model_bytes(quantizer.with_floor_factor(f).quantize(state)) for f in (0, 1)]
    assert sizes[0] > 1.3 * sizes[1]
    budget = ByteBudget(1000 + (sizes[0] + sizes[1]) // 2, 1000, codec)
    factor, info = fit_floor(state, quantizer, budget, headroom=0.02)
    assert 0 < factor < 1 and info["factor"] == factor and info["probes"] == 10 and info["real_compressions"] == 4
    assert not info["sampled"]  # a small payload is measured whole
    fitted = quantizer.with_floor_factor(factor).quantize(state)
    assert budget.total(fitted) <= budget.limit
    assert info["estimated_model_bytes"] == pytest.approx(budget.model_bytes(fitted), rel=0.01)
    target = 0.98 * budget.limit - budget.code_bytes
    assert budget.model_bytes(quantizer.with_floor_factor(0.9 * factor).quantize(state)) > target
    scales = torch.cat([fitted.tensors[m["scale"]].float() for m in fitted.meta.values()])
    assert torch.allclose(scales.min(), torch.tensor(factor / 31).half().float())
    assert quantizer.floor_factor == 1.0  # the configured quantizer is left as it was


def test_floor_fitting_keeps_the_ends_when_the_budget_decides():
    state, quantizer, codec = _state(), Quantizer(matrix_bits=6, method="lite", keep_float_max_numel=0), Lzma(preset=6)
    assert fit_floor(state, quantizer, ByteBudget(10**9, 0, codec))[0] == 0.0  # no floor needed
    full = ByteBudget(10**9, 0, codec).model_bytes(quantizer.quantize(state))
    coarser = ByteBudget(int(0.8 * full), 0, codec)  # the records' floor is over: a coarser grid fits
    factor, info = fit_floor(state, quantizer, coarser, headroom=0.0)
    assert 1 < factor <= 64 and info["model_bytes_full_floor"] == full
    assert coarser.model_bytes(quantizer.with_floor_factor(factor).quantize(state)) <= coarser.limit * 1.01  # pruning closes the rest
    factor, info = fit_floor(state, quantizer, ByteBudget(50, 0, codec))  # nothing fits: pruning's turn
    assert factor == 64 and info["estimated_model_bytes"] > 50


def test_a_large_payload_is_sized_on_a_sample_within_a_percent(monkeypatch):
    """estimated_model_bytes: a payload over SAMPLE_ABOVE is compressed on every 8th 4 KiB block; on int6 codes of
    Gaussian weights (what a trained matrix rounds to) lzma's size of the sample, scaled, is within 1% of the
    whole's."""
    from golf.quant import fit

    g = torch.Generator().manual_seed(0)
    state = {f"blocks.{i}.mlp.fc.weight": torch.randn(512, 512, generator=g) * 0.02 for i in range(8)}
    q = Quantizer(matrix_bits=6, method="rtn", keep_float_max_numel=0, scale_floor=0).quantize(state)
    codec = Lzma(preset=6)
    monkeypatch.setattr(fit, "SAMPLE_ABOVE", 1 << 20)
    size, sampled = fit.estimated_model_bytes(q, codec)
    assert sampled and size == pytest.approx(ByteBudget(10**9, 0, codec).model_bytes(q), rel=0.01)
    monkeypatch.setattr(fit, "SAMPLE_ABOVE", 1 << 30)
    assert fit.estimated_model_bytes(q, codec) == (ByteBudget(10**9, 0, codec).model_bytes(q), False)


def test_pack_refits_the_floor_when_the_real_artifact_is_over(monkeypatch):
    """golf.quant.pack: when floor fitting's size estimate is low (here: made 10% low for the first fit), the real
    artifact comes out over the limit; compress fits again with the miss as extra headroom, and the artifact it
    hands back is within the limit."""
    from golf.quant import fit, pack

    state, codec = _state(width=256), Lzma(preset=6)
    quantizer = Quantizer(matrix_bits=6, method="lite", keep_float_max_numel=0)
    sizes = [ByteBudget(10**9, 0, codec).model_bytes(quantizer.with_floor_factor(f).quantize(state)) for f in (0, 1)]
    budget = ByteBudget(1000 + (sizes[0] + sizes[1]) // 2, 1000, codec)
    real_estimate, fits = fit.estimated_model_bytes, []

    def low_at_first(q, compressor):
        size, sampled = real_estimate(q, compressor)
        return (int(0.9 * size) if len(fits) == 0 else size), sampled

    def counting_fit(*args, **kw):
        out = fit.fit_floor(*args, **kw)
        fits.append(kw["headroom"])
        return out

    monkeypatch.setattr(fit, "estimated_model_bytes", low_at_first)
    monkeypatch.setattr(pack, "fit_floor", counting_fit)
    quantized = pack.quantize(state, quantizer, budget, log=lambda m: None)
    assert budget.total(quantized.qstate) > budget.limit  # the low estimate overshot
    packed = pack.compress(quantized, budget, log=lambda m: None)
    assert len(fits) == 2 and fits[1] > fits[0] and packed.fitting["refits"][0]["over_bytes"] > 0
    assert budget.code_bytes + len(packed.blob) <= budget.limit and packed.blob == budget.encode(packed.qstate)
