"""OrthoGrad step 3: remove from the unlearn gradient every direction the retain gradients span.

g⊥ = g_u − Q Qᵀ g_u, Q an orthonormal basis of the rows of G_r (k × n). Rows are scaled to unit norm
first (same span; otherwise a well-fitted sample, whose gradient is orders of magnitude smaller,
would fall under the rank tolerance). Two solvers give the same projection:

- `qr`: reduced QR of G_rᵀ = Q₀R; span(G_r) = Q₀·span(R), so an SVD of the small factor R (float64)
  gives the rank and drops directions under `rank_tol` of the largest: Q = Q₀U_kept. (Dropping Q₀'s
  columns by R's diagonal alone would be wrong without pivoting.) Applied twice: the second pass
  removes what float32 rounding left of the first ("twice is enough").
- `gram` (default, about 3× cheaper): QQᵀ = G_rᵀ(G_r G_rᵀ)⁺G_r. The k×k Gram matrix and both thin
  products are formed in float64, chunk by chunk (memory stays at the float32 G_r plus one chunk);
  its eigendecomposition drops directions whose singular value is under `rank_tol` of the largest.

Scope `per_tensor` projects each parameter tensor on its own, as the authors' code does; tensors
with ≤ k entries then lose their whole unlearn gradient. `global` treats θ as one vector.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ProjectionStats:
    retain_rank: int  # rank of G_r (global) or the largest per-tensor rank
    kept_norm_ratio: float  # ‖g⊥‖ / ‖g_u‖
    conflict_share: float  # share of retain samples that plain ascent hurts (gradients/conflict.py)


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


def gram_coefficients(gram, along, rank_tol: float):
    """c with g⊥ = g − Gᵀc, from K = GGᵀ and Gg (float64, batched); rows count as unit-norm."""
    import torch

    norms = gram.diagonal(dim1=-2, dim2=-1).sqrt()
    scale = torch.where(norms > 0, norms, torch.ones_like(norms))
    unit_gram = gram / (scale[..., :, None] * scale[..., None, :])
    eigenvalues, eigenvectors = torch.linalg.eigh(unit_gram)
    keep = eigenvalues > (rank_tol ** 2) * eigenvalues[..., -1:].clamp_min(0)  # λ = s², sorted ascending
    keep &= eigenvalues > 0
    inverse = torch.where(keep, 1.0 / eigenvalues.clamp_min(1e-300), torch.zeros_like(eigenvalues))
    unit_along = along / scale
    unit_coeffs = eigenvectors @ (inverse * (eigenvectors.transpose(-1, -2) @ unit_along[..., None])[..., 0])[..., None]
    return unit_coeffs[..., 0] / scale, keep.sum(-1)


def _project_gram(names, flat_g, flat_rows, scope: str, rank_tol: float):
    """Gram solver, tensor by tensor on contiguous blocks: the global system is the sum of the blocks."""
    import torch

    grams, alongs = [], []
    for n in names:  # pass 1: per-tensor Gram blocks and G g, in float64
        block = flat_rows[n].double()
        grams.append(block @ block.T)
        alongs.append(block @ flat_g[n].double())
    if scope == "global":
        coeffs, rank = gram_coefficients(sum(grams), sum(alongs), rank_tol)
        coeffs = [coeffs] * len(names)
    else:
        stacked, rank = gram_coefficients(torch.stack(grams), torch.stack(alongs), rank_tol)
        coeffs = list(stacked)
    projected = {}
    for n, c in zip(names, coeffs):  # pass 2: g⊥ = g − Gᵀc
        projected[n] = (flat_g[n].double() - flat_rows[n].double().T @ c).to(flat_g[n].dtype)
    return projected, int(rank.max())


def project(unlearn_grad: dict, retain_rows: dict, scope: str = "per_tensor", rank_tol: float = 1e-6,
            solver: str = "gram"):
    """g⊥ for a dict of gradients; `retain_rows[name]` has shape (k, *param.shape)."""
    import torch

    names = list(unlearn_grad)
    k = next(iter(retain_rows.values())).shape[0]
    flat_g = {n: unlearn_grad[n].reshape(-1) for n in names}
    flat_rows = {n: retain_rows[n].reshape(k, -1) for n in names}
    if scope not in ("global", "per_tensor"):
        raise ValueError(f"unknown projection scope '{scope}'")
    if solver == "gram":
        flat, max_rank = _project_gram(names, flat_g, flat_rows, scope, rank_tol)
        projected = {n: flat[n].view_as(unlearn_grad[n]) for n in names}
        return projected, projection_stats(unlearn_grad, projected, retain_rows, max_rank)
    projected: dict = {}
    if scope == "global":
        vector = torch.cat([flat_g[n] for n in names])[None]
        rows = torch.cat([flat_rows[n] for n in names], dim=1)[None]
        out, rank = project_batched(vector, rows, rank_tol)
        for n, piece in zip(names, out[0].split([flat_g[n].numel() for n in names])):
            projected[n] = piece.view_as(unlearn_grad[n])
        max_rank = int(rank.max())
    else:
        # Tensors of equal size share one batched QR instead of a Python loop of small ones.
        by_size: dict[int, list[str]] = {}
        for n in names:
            by_size.setdefault(flat_g[n].numel(), []).append(n)
        max_rank = 0
        for group in by_size.values():
            vectors = torch.stack([flat_g[n] for n in group])
            rows = torch.stack([flat_rows[n] for n in group])
            out, rank = project_batched(vectors, rows, rank_tol)
            max_rank = max(max_rank, int(rank.max()))
            for n, piece in zip(group, out):
                projected[n] = piece.view_as(unlearn_grad[n])
    return projected, projection_stats(unlearn_grad, projected, retain_rows, max_rank)


def projection_stats(unlearn_grad: dict, projected: dict, retain_rows: dict, retain_rank: int) -> ProjectionStats:
    from orthograd_cli.gradients.conflict import conflict_share

    k = next(iter(retain_rows.values())).shape[0]
    dots = sum(retain_rows[n].reshape(k, -1) @ unlearn_grad[n].reshape(-1) for n in unlearn_grad)
    return ProjectionStats(
        retain_rank=retain_rank,
        kept_norm_ratio=float(global_norm(projected) / global_norm(unlearn_grad).clamp_min(1e-30)),
        conflict_share=conflict_share(dots),
    )


def global_norm(tensors: dict):
    import torch

    return torch.sqrt(sum((t.double() ** 2).sum() for t in tensors.values()))
