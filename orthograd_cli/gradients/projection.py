"""OrthoGrad step 3: remove from the unlearn gradient every direction the retain gradients span.

g⊥ = g_u − Q Qᵀ g_u, Q an orthonormal basis of the rows of G_r (k × n). Rows are scaled to unit norm
first (same span; otherwise a well-fitted sample, whose gradient is orders of magnitude smaller,
would fall under the rank tolerance). Three solvers give the same projection:

- `cholesky` (default): QQᵀ = G_rᵀ(G_r G_rᵀ)⁺G_r with the k×k system solved by batched Cholesky with a
  small relative ridge and two refinement steps: a step never waits for the device (no eigenvalues,
  no error flags read back). The Gram blocks and both thin products are float64.
- `gram`: the same system by eigendecomposition, which drops directions whose singular value is under
  `rank_tol` of the largest: the exact reference, and the solver for rank diagnostics one can trust
  to the last direction.
- `qr`: reduced QR of G_rᵀ = Q₀R; span(G_r) = Q₀·span(R), so an SVD of the small factor R (float64)
  gives the rank and drops directions under `rank_tol` of the largest: Q = Q₀U_kept. (Dropping Q₀'s
  columns by R's diagonal alone would be wrong without pivoting.) Applied twice: the second pass
  removes what float32 rounding left of the first ("twice is enough").

The Gram solvers take tensors of equal size together: one batched product per size, not two per tensor.
Scope `per_tensor` projects each parameter tensor on its own, as the authors' code does; tensors
with ≤ k entries then lose their whole unlearn gradient. `global` treats θ as one vector.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ProjectionStats:
    """One step's diagnostics as 0-dim tensors on the run's device. Reading one (float(), int()) waits for
    the device, so the loop reads them only at stop-rule checks (methods/loop.py), never inside a step."""

    retain_rank: object  # rank of G_r (global) or the largest per-tensor rank
    kept_norm_ratio: object  # ‖g⊥‖ / ‖g_u‖
    conflict_share: object  # share of retain samples that plain ascent hurts (gradients/conflict.py); None
    # without per-sample retain gradients (the mean/none ablations), where no sample's conflict is known

    def read(self) -> dict:
        values = {"retain_rank": int(self.retain_rank), "kept_norm_ratio": float(self.kept_norm_ratio)}
        if self.conflict_share is not None:
            values["conflict_share"] = float(self.conflict_share)
        return values


def _span_projector(rows, rank_tol: float):
    """For batched rows (b, k, n): Q₀ (b, n, m) and U (b, m, m) with dropped directions zeroed."""
    import torch

    q0, r = torch.linalg.qr(rows.transpose(-1, -2), mode="reduced")
    u, s, _ = torch.linalg.svd(r.double(), full_matrices=False)
    keep = s > rank_tol * s[..., :1]
    return q0, (u * keep[..., None, :]).to(q0.dtype), keep.sum(-1)


def _remove_span(vectors, q0, u):
    """vectors − Q Qᵀ vectors with Q = Q₀U, for vectors (b, n)."""
    coeffs = u @ (u.transpose(-1, -2) @ (q0.transpose(-1, -2) @ vectors[..., None]))
    return vectors - (q0 @ coeffs)[..., 0]


def project_batched(vectors, rows, rank_tol: float = 1e-6):
    """QR solver: project each of b vectors (b, n) off the span of its rows (b, k, n); also returns ranks (b,)."""
    rows = rows / rows.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    q0, u, rank = _span_projector(rows, rank_tol)
    projected = _remove_span(vectors, q0, u)
    return _remove_span(projected, q0, u), rank


def gram_coefficients(gram, along, rank_tol: float, solver: str = "cholesky"):
    """c with g⊥ = g − Gᵀc, from K = GGᵀ and b = Gg (float64, batched (..., k, k)); rows count as unit-norm.
    Also returns each system's rank. `cholesky` runs without reading anything back from the device;
    `gram` (eigendecomposition) is the exact reference."""
    import torch

    norms = gram.diagonal(dim1=-2, dim2=-1).sqrt()
    scale = torch.where(norms > 0, norms, torch.ones_like(norms))
    unit_gram = gram / (scale[..., :, None] * scale[..., None, :])
    unit_along = along / scale
    if solver == "cholesky":
        unit_coeffs, rank = _ridge_cholesky_solve(unit_gram, unit_along, rank_tol)
    else:
        unit_coeffs, rank = _eigen_solve(unit_gram, unit_along, rank_tol)
    return unit_coeffs / scale, rank


def _eigen_solve(unit_gram, unit_along, rank_tol: float):
    """Pseudo-inverse solve: directions with singular value under rank_tol of the largest are dropped."""
    import torch

    eigenvalues, eigenvectors = torch.linalg.eigh(unit_gram)
    keep = eigenvalues > (rank_tol ** 2) * eigenvalues[..., -1:].clamp_min(0)  # λ = s², sorted ascending
    keep &= eigenvalues > 0
    inverse = torch.where(keep, 1.0 / eigenvalues.clamp_min(1e-300), torch.zeros_like(eigenvalues))
    coeffs = eigenvectors @ (inverse * (eigenvectors.transpose(-1, -2) @ unit_along[..., None])[..., 0])[..., None]
    return coeffs[..., 0], keep.sum(-1)


DETECTION_RIDGE_SHARE = 100  # round 1's ridge is ρ/100: far below the cut, far above float64 rounding (k·2⁻⁵³)


def _ridge_cholesky_solve(unit_gram, unit_along, rank_tol: float, refinements: int = 2):
    """The k×k system by batched Cholesky, in two rounds, without reading anything back from the device.

    Round 1 factors K + (ρ/100)I, ρ = rank_tol²·trace(K) (≥ rank_tol² of the largest eigenvalue): a Schur
    pivot under ρ marks a row that lies in the span of the rows before it (a duplicate, a zero row, a sum of
    others), to the rank cut; such rows are dropped (their rank is the count of the others). The ridge of this
    round is a hundredth of the cut because a row in the span, r = Σ cᵢrᵢ, still gets a pivot of about
    ridge·(1 + |c|²): with the ridge at the cut, a duplicate (|c| = 1) sat on the cut itself and float64
    rounding decided its fate (kept on one CPU, dropped on another). Round 2 solves the
    remaining rows' system with the same ridge, then `refinements` steps c ← c + (K + ρI)⁻¹(b − Kc): a
    direction with eigenvalue λ keeps the share (ρ/(λ+ρ))^(1+refinements) of the ridge's bias, nothing
    above the rank cut to float64 rounding."""
    import torch

    k = unit_gram.shape[-1]
    trace = unit_gram.diagonal(dim1=-2, dim2=-1).sum(-1)
    ridge = ((rank_tol ** 2) * trace.clamp_min(torch.finfo(torch.float64).tiny))[..., None, None]
    eye = torch.eye(k, dtype=unit_gram.dtype, device=unit_gram.device)
    detect = ridge / DETECTION_RIDGE_SHARE
    factor, _ = torch.linalg.cholesky_ex(unit_gram + detect * eye)  # no error check: that would wait for the device
    independent = factor.diagonal(dim1=-2, dim2=-1) ** 2 - detect[..., 0] > ridge[..., 0]  # Schur pivot > ρ
    both = independent[..., :, None] & independent[..., None, :]
    dropped = torch.diag_embed((~independent).to(unit_gram.dtype))  # a 1 on their diagonal keeps K + ρI definite
    gram = torch.where(both, unit_gram, torch.zeros_like(unit_gram)) + dropped
    along = torch.where(independent, unit_along, torch.zeros_like(unit_along))[..., None]
    factor, _ = torch.linalg.cholesky_ex(gram + ridge * eye)
    coeffs = torch.cholesky_solve(along, factor)
    for _ in range(refinements):
        coeffs = coeffs + torch.cholesky_solve(along - gram @ coeffs, factor)
    return torch.where(independent, coeffs[..., 0], torch.zeros_like(coeffs[..., 0])), independent.sum(-1)


# Bytes of float64 rows per batched product. The GPU wants few large kernels; the CPU wants blocks that stay in
# its cache (2-core EPYC, resnet18 LoRA k=64: 64 MB blocks took 1.2–1.6× the time of per-tensor products, 32 MB
# blocks 0.99–1.09×).
BLOCK_BYTES = {"cuda": 1 << 30, "cpu": 32 << 20}
# Global scope reads the rows twice (the system needs every block before any block's g − Gᵀc): float64 copies up
# to this many bytes are kept from the first pass for the second instead of converted again.
KEEP_BYTES = {"cuda": 1 << 30, "cpu": 1 << 30}


def _size_groups(names, flat_g, k: int) -> list[list[str]]:
    """Tensors of equal size, which share one batched product (LoRA's A and B factors come in a few sizes),
    so a step runs a few large kernels instead of two small ones per tensor; split where a group's float64
    rows would exceed BLOCK_BYTES of their device."""
    by_size: dict[int, list[str]] = {}
    for n in names:
        by_size.setdefault(flat_g[n].numel(), []).append(n)
    groups = []
    for size, group in by_size.items():
        device = flat_g[group[0]].device.type
        per_block = max(1, BLOCK_BYTES.get(device, BLOCK_BYTES["cuda"]) // ((k + 1) * size * 8))
        groups += [group[i:i + per_block] for i in range(0, len(group), per_block)]
    return groups


def _stacked(group, flat_g, flat_rows, k: int):
    """One group's rows with its vectors appended, A = [G; g] (b, k+1, n), in float64: one buffer, filled by
    converting copies (no float32 intermediate)."""
    import torch

    first = flat_rows[group[0]]
    stacked = torch.empty(len(group), k + 1, first.shape[1], dtype=torch.float64, device=first.device)
    for i, n in enumerate(group):
        stacked[i, :k].copy_(flat_rows[n])
        stacked[i, k].copy_(flat_g[n])
    return stacked


def _blocks(stacked, k: int):
    """The group's Gram blocks K = GGᵀ (b, k, k) and G·g (b, k): both from one product A·Aᵀ (a batched
    matrix-vector product for G·g alone is several times slower on the CPU than this one product)."""
    product = stacked @ stacked.transpose(1, 2)
    return product[:, :k, :k], product[:, :k, k]


def _remove(stacked, coeffs, k: int):
    """g − Gᵀc for each block: c (b, k) as a row times G, one batched product."""
    return stacked[:, k] - (coeffs[:, None, :] @ stacked[:, :k])[:, 0]


def _project_gram(names, flat_g, flat_rows, scope: str, rank_tol: float, solver: str):
    """Gram solvers, a group of equal-size tensors at a time (memory: one group's rows in float64).
    per_tensor: each block is its own system, solved as soon as it is formed. global: the system is the
    sum of the blocks, so the rows are read twice (K and Gg first, g − Gᵀc after the solve), from the first
    pass's float64 copies while they fit KEEP_BYTES."""
    import torch

    k = next(iter(flat_rows.values())).shape[0]
    groups = _size_groups(names, flat_g, k)
    projected, ranks, dots = {}, [], 0

    def store(group, out):
        for n, piece in zip(group, out):
            projected[n] = piece.to(flat_g[n].dtype)

    if scope == "per_tensor":
        for group in groups:
            stacked = _stacked(group, flat_g, flat_rows, k)
            gram, along = _blocks(stacked, k)
            coeffs, rank = gram_coefficients(gram, along, rank_tol, solver)
            store(group, _remove(stacked, coeffs, k))
            ranks.append(rank.max())
            dots = dots + along.sum(0)
        return projected, torch.stack(ranks).max(), dots
    gram, kept = 0, []
    budget = KEEP_BYTES.get(next(iter(flat_rows.values())).device.type, KEEP_BYTES["cuda"])
    for group in groups:
        stacked = _stacked(group, flat_g, flat_rows, k)
        group_gram, along = _blocks(stacked, k)
        gram, dots = gram + group_gram.sum(0), dots + along.sum(0)
        keeping = budget >= stacked.numel() * 8  # the float64 copy kept for the second pass, while it fits
        budget -= stacked.numel() * 8 if keeping else 0
        kept.append(stacked if keeping else None)
    coeffs, rank = gram_coefficients(gram, dots, rank_tol, solver)
    for group, stacked in zip(groups, kept):
        stacked = stacked if stacked is not None else _stacked(group, flat_g, flat_rows, k)
        store(group, _remove(stacked, coeffs.expand(len(group), -1), k))
    return projected, rank, dots


def project(unlearn_grad: dict, retain_rows: dict, scope: str = "per_tensor", rank_tol: float = 1e-6,
            solver: str = "cholesky"):
    """g⊥ for a dict of gradients; `retain_rows[name]` has shape (k, *param.shape)."""
    import torch

    names = list(unlearn_grad)
    k = next(iter(retain_rows.values())).shape[0]
    flat_g = {n: unlearn_grad[n].reshape(-1) for n in names}
    flat_rows = {n: retain_rows[n].reshape(k, -1) for n in names}
    if scope not in ("global", "per_tensor"):
        raise ValueError(f"unknown projection scope '{scope}'")
    if solver in ("gram", "cholesky"):
        flat, max_rank, dots = _project_gram(names, flat_g, flat_rows, scope, rank_tol, solver)
        projected = {n: flat[n].view_as(unlearn_grad[n]) for n in names}
        return projected, projection_stats(unlearn_grad, projected, retain_rows, max_rank, dots)
    projected: dict = {}
    if scope == "global":
        vector = torch.cat([flat_g[n] for n in names])[None]
        rows = torch.cat([flat_rows[n] for n in names], dim=1)[None]
        out, rank = project_batched(vector, rows, rank_tol)
        for n, piece in zip(names, out[0].split([flat_g[n].numel() for n in names])):
            projected[n] = piece.view_as(unlearn_grad[n])
        max_rank = rank.max()
    else:
        ranks = []
        for group in _size_groups(names, flat_g, k):  # equal-size tensors: one batched QR, not a loop of small ones
            vectors = torch.stack([flat_g[n] for n in group])
            rows = torch.stack([flat_rows[n] for n in group])
            out, rank = project_batched(vectors, rows, rank_tol)
            ranks.append(rank.max())
            for n, piece in zip(group, out):
                projected[n] = piece.view_as(unlearn_grad[n])
        max_rank = torch.stack(ranks).max()
    return projected, projection_stats(unlearn_grad, projected, retain_rows, max_rank)


def projection_stats(unlearn_grad: dict, projected: dict, retain_rows: dict, retain_rank, dots=None) -> ProjectionStats:
    """The step's diagnostics, left on the device; `dots` = G_r·g_u when the solver already has it."""
    import torch

    from orthograd_cli.gradients.conflict import conflict_share

    if dots is None:
        k = next(iter(retain_rows.values())).shape[0]
        dots = sum(retain_rows[n].reshape(k, -1).double() @ unlearn_grad[n].reshape(-1).double() for n in unlearn_grad)
    return ProjectionStats(
        retain_rank=torch.as_tensor(retain_rank),
        kept_norm_ratio=global_norm(projected) / global_norm(unlearn_grad).clamp_min(1e-30),
        conflict_share=conflict_share(dots),
    )


def global_norm(tensors: dict):
    import torch

    return torch.sqrt(sum((t.double() ** 2).sum() for t in tensors.values()))
