"""OrthoGrad step 3: remove from the unlearn gradient every direction the retain gradients span.

g⊥ = g_u − Q Qᵀ g_u, Q an orthonormal basis of the rows of G_r (k × n). Q comes from the reduced QR
of G_rᵀ = Q₀R; span(G_r) = Q₀·span(R), so an SVD of the small k×k factor R (in float64) gives the
rank and drops directions under `rank_tol` of the largest (rows are scaled to unit norm first): Q = Q₀U_kept. (Dropping Q₀'s columns by
R's diagonal alone would be wrong without pivoting.) The projection is applied twice: the second
pass removes what float32 rounding left of the first ("twice is enough").

Scope `per_tensor` projects each parameter tensor on its own, as the authors' code does; tensors
with ≤ k entries then lose their whole unlearn gradient. `global` treats θ as one vector.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ProjectionStats:
    retain_rank: int  # rank of G_r (global) or the largest per-tensor rank
    kept_norm_ratio: float  # ‖g⊥‖ / ‖g_u‖
    conflict_share: float  # share of retain samples whose gradient has a negative dot with g_u


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
    """Project each of b vectors (b, n) off the span of its rows (b, k, n); also returns ranks (b,)."""
    # Unit rows span the same space; without this a well-fitted sample, whose gradient is orders of
    # magnitude smaller than the others', would fall under the rank tolerance and be ignored.
    rows = rows / rows.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    q0, u, rank = _span_projector(rows, rank_tol)
    projected = _remove_span(vectors, q0, u)
    return _remove_span(projected, q0, u), rank


def project(unlearn_grad: dict, retain_rows: dict, scope: str = "per_tensor", rank_tol: float = 1e-6):
    """g⊥ for a dict of gradients; `retain_rows[name]` has shape (k, *param.shape)."""
    import torch

    names = list(unlearn_grad)
    k = next(iter(retain_rows.values())).shape[0]
    flat_g = {n: unlearn_grad[n].reshape(-1) for n in names}
    flat_rows = {n: retain_rows[n].reshape(k, -1) for n in names}
    projected: dict = {}
    if scope == "global":
        vector = torch.cat([flat_g[n] for n in names])[None]
        rows = torch.cat([flat_rows[n] for n in names], dim=1)[None]
        out, rank = project_batched(vector, rows, rank_tol)
        for n, piece in zip(names, out[0].split([flat_g[n].numel() for n in names])):
            projected[n] = piece.view_as(unlearn_grad[n])
        max_rank = int(rank.max())
    elif scope == "per_tensor":
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
    else:
        raise ValueError(f"unknown projection scope '{scope}'")
    return projected, projection_stats(unlearn_grad, projected, retain_rows, max_rank)


def projection_stats(unlearn_grad: dict, projected: dict, retain_rows: dict, retain_rank: int) -> ProjectionStats:
    k = next(iter(retain_rows.values())).shape[0]
    dots = sum(retain_rows[n].reshape(k, -1) @ unlearn_grad[n].reshape(-1) for n in unlearn_grad)
    return ProjectionStats(
        retain_rank=retain_rank,
        kept_norm_ratio=float(global_norm(projected) / global_norm(unlearn_grad).clamp_min(1e-30)),
        conflict_share=float((dots < 0).float().mean()),
    )


def global_norm(tensors: dict):
    import torch

    return torch.sqrt(sum((t.double() ** 2).sum() for t in tensors.values()))
