"""The OrthoGrad math on real gradients of a trained resnet18: per-sample backends and the projection."""

from __future__ import annotations

import pytest
import torch

from orthograd_cli.errors import RecipeError
from orthograd_cli.gradients.per_sample import batch_grad, per_sample_grads, trainable_parameters
from orthograd_cli.gradients.projection import project
from orthograd_cli.models.lora import trainable_model
from orthograd_cli.loading import load_checkpoint_and_info
from orthograd_cli.methods.loop import apply_update
from orthograd_cli.methods.orthograd import orthograd_direction
from orthograd_cli.models.registry import load_model
from orthograd_cli.tasks.classification import mean_loss, per_sample_losses


@pytest.fixture(scope="module")
def mid_unlearning(trained_model, recipe, image_sets):
    """LoRA-wrapped trained model after 3 OrthoGrad steps, so both LoRA factors carry gradient."""
    checkpoint, info = load_checkpoint_and_info(trained_model, recipe)
    model, params = trainable_model(load_model(checkpoint, info).eval(), recipe, info)
    forget, retain = image_sets["forget"], image_sets["retain"]
    for step in range(3):
        fi, ri = torch.arange(step * 8, step * 8 + 32), torch.arange(64)
        direction = orthograd_direction(model, params, forget.batch(fi), retain.batch(ri), recipe.method, mean_loss)
        apply_update(params, direction.update, 0.05, None)
    return model, params


@pytest.fixture(scope="module")
def real_grads(mid_unlearning, image_sets):
    """(g_u, per-sample retain rows) of the model mid-unlearning for k retain samples, computed once per k."""
    model, params = mid_unlearning
    forget, retain = image_sets["forget"], image_sets["retain"]
    computed = {}

    def at(k: int):
        if k not in computed:
            g_u, _ = batch_grad(model, params, *forget.batch(torch.arange(32)), mean_loss)
            rows, _ = per_sample_grads(model, params, *retain.batch(torch.arange(k)), mean_loss, "vmap")
            computed[k] = g_u, rows
        return computed[k]

    return at


def reference_projection(g_u: dict, rows: dict, scope: str) -> dict:
    """g − Gᵀc with c the float64 least-squares solution of Gᵀc ≈ g: projection off span(G), independently."""
    names = list(g_u)
    k = next(iter(rows.values())).shape[0]

    def off_span(g, G):
        # gelsy (QR with column pivoting): on these rows gelsd's SVD route was itself 6e-9 off, gelsy 1e-13
        c = torch.linalg.lstsq(G.T, g[:, None], driver="gelsy").solution
        return g - (G.T @ c)[:, 0]

    if scope == "global":
        g = torch.cat([g_u[n].double().reshape(-1) for n in names])
        G = torch.cat([rows[n].double().reshape(k, -1) for n in names], dim=1)
        return {"all": off_span(g, G)}
    return {n: off_span(g_u[n].double().reshape(-1), rows[n].double().reshape(k, -1)) for n in names}


# Orthogonality bounds, as cosines |⟨g⊥, g_i⟩| / (‖g⊥‖‖g_i‖). float64: the solve leaves about cond·2⁻⁵³ with
# cond ≤ 1/rank_tol = 1e6 after the rank cut, ≈ 1e-10 (asserted 1e-9). float32: rounding g⊥ to float32 moves each
# dot by at most u·‖g⊥‖‖g_i‖ (Cauchy–Schwarz, u = 6e-8), and the qr solver's float32 QR, orthogonalised twice,
# leaves about k·u ≤ 128·6e-8 ≈ 7.7e-6 (asserted 1e-5).
ORTHOGONALITY_BOUND = {torch.float32: 1e-5, torch.float64: 1e-9}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("solver", ["cholesky", "gram", "qr"])
@pytest.mark.parametrize("scope", ["per_tensor", "global"])
@pytest.mark.parametrize("k", [64, 128])
def test_projected_grad_is_orthogonal_to_every_retain_grad(mid_unlearning, real_grads, scope, k, solver, dtype):
    _, params = mid_unlearning
    g_u, rows = real_grads(k)
    g_u, rows = ({n: t.to(dtype) for n, t in tensors.items()} for tensors in (g_u, rows))
    projected, stats = project(g_u, rows, scope, solver=solver)
    assert all(p.dtype == dtype for p in projected.values())
    flat_p = torch.cat([projected[n].double().reshape(-1) for n in params])
    flat_rows = torch.cat([rows[n].double().reshape(k, -1) for n in params], dim=1)
    cosines = (flat_rows @ flat_p).abs() / (flat_p.norm() * flat_rows.norm(dim=1))
    assert flat_p.norm() > 0.01 * torch.cat([g.double().reshape(-1) for g in g_u.values()]).norm()
    assert float(cosines.max()) <= ORTHOGONALITY_BOUND[dtype], f"worst cosine {float(cosines.max()):.2e}"
    if scope == "per_tensor":  # block-wise orthogonality holds tensor by tensor too
        for n in params:
            block_rows = rows[n].double().reshape(k, -1)
            block = (block_rows @ projected[n].double().reshape(-1)).abs()
            bound = ORTHOGONALITY_BOUND[dtype] * block_rows.norm(dim=1) * g_u[n].double().norm()
            assert bool((block <= bound).all()), n


@pytest.mark.parametrize("solver", ["cholesky", "gram", "qr"])
@pytest.mark.parametrize("scope", ["per_tensor", "global"])
def test_projection_matches_float64_reference(mid_unlearning, real_grads, scope, solver):
    """Both solvers in float64 against least squares (LAPACK gelsy), on the same real gradients: the same
    projection to float64 rounding times the rows' condition (≤ 1e6 after unit scaling), asserted 1e-9."""
    _, params = mid_unlearning
    g_u, rows = real_grads(64)
    g_u, rows = ({n: t.double() for n, t in tensors.items()} for tensors in (g_u, rows))
    projected, _ = project(g_u, rows, scope, solver=solver)
    reference = reference_projection(g_u, rows, scope)
    ours = torch.cat([projected[n].reshape(-1) for n in params])
    ref = reference["all"] if scope == "global" else torch.cat([reference[n] for n in params])
    assert float((ours - ref).norm() / ref.norm()) <= 1e-9


@pytest.mark.parametrize("solver", ["cholesky", "gram", "qr"])
def test_per_tensor_scope_zeroes_tensors_with_at_most_k_entries(solver):
    g_u = {"small": torch.randn(5), "large": torch.randn(300)}
    rows = {"small": torch.randn(8, 5), "large": torch.randn(8, 300)}
    projected, _ = project(g_u, rows, "per_tensor", solver=solver)
    # removed entirely, up to float32 rounding of a solve over k = 8 rows: about k·u·‖g‖ (asserted 10× that)
    k, u = 8, torch.finfo(torch.float32).eps / 2
    assert float(projected["small"].norm()) <= 10 * k * u * float(g_u["small"].norm())
    assert float(projected["large"].norm()) > 0.5 * float(g_u["large"].norm())


@pytest.mark.parametrize("solver", ["cholesky", "gram", "qr"])
def test_rank_deficient_retain_batch_projects_onto_the_true_span(solver):
    """Duplicated and zero rows must neither break the basis nor remove directions outside the span."""
    torch.manual_seed(0)
    a, b = torch.randn(1000, dtype=torch.float64), torch.randn(1000, dtype=torch.float64)
    exact_rows = torch.stack([a, a, torch.zeros_like(a), b, 2 * a - b])
    g = torch.randn(1000, dtype=torch.float64)
    projected, stats = project({"w": g.float()}, {"w": exact_rows.float()}, "global", solver=solver)
    reference = reference_projection({"w": g}, {"w": exact_rows}, "global")["all"]
    assert int(stats.retain_rank) == 2
    # the rows were rounded to float32 (u = 6e-8), which tilts their span by about u times the rows'
    # condition within it (a few units here): the float32 projection agrees to well under 1e-5
    assert float((projected["w"].double() - reference).norm() / reference.norm()) < 1e-5


# float32 keeps 24 bits: unit roundoff u = 2⁻²⁴ ≈ 6.0e-8. A per-sample gradient of this resnet18 is a chain of
# about 20 layers, each a reduction of at most n = 512·3·3 = 4608 products (the widest conv's backward); the
# standard worst-case bound for such a reduction is n·u of the magnitudes involved, so two float32 computations
# of the same gradient in different orders (batched hooks or vmap against one backward per sample) may differ by
# up to 20·n·u ≈ 5.5e-3 of the whole gradient's norm. Exactness is tested in float64, where the same chain
# bounds the difference at 20·n·2⁻⁵³ ≈ 1e-11 (asserted: 1e-9).
FLOAT32_CHAIN_BOUND = 20 * 4608 * torch.finfo(torch.float32).eps / 2
FLOAT64_BOUND = 1e-9


def whole_gradient_error(fast: dict, slow: dict) -> float:
    """Worst sample's ‖fast − slow‖ / ‖slow‖ over every trainable tensor together (not one tiny tensor)."""
    k = next(iter(slow.values())).shape[0]
    flat_fast = torch.cat([fast[n].double().reshape(k, -1) for n in slow], dim=1)
    flat_slow = torch.cat([slow[n].double().reshape(k, -1) for n in slow], dim=1)
    return float(((flat_fast - flat_slow).norm(dim=1) / flat_slow.norm(dim=1)).max())


@pytest.mark.parametrize("backend", ["vmap", "hooks"])
@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, FLOAT32_CHAIN_BOUND), (torch.float64, FLOAT64_BOUND)])
def test_per_sample_grads_equal_the_loop_reference(mid_unlearning, image_sets, dtype, tolerance, backend):
    model, _ = mid_unlearning
    model = model.to(dtype)
    try:
        params = trainable_parameters(model)
        retain = image_sets["retain"]
        inputs, labels = retain.batch(torch.arange(16))
        inputs = inputs.to(dtype)
        fast, fast_losses = per_sample_grads(model, params, inputs, labels, mean_loss, backend, chunk_size=5)
        slow, slow_losses = per_sample_grads(model, params, inputs, labels, mean_loss, "loop")
        assert whole_gradient_error(fast, slow) <= tolerance
        if dtype == torch.float64:  # and tensor by tensor, where nothing is rounded away
            for name in params:
                error = (fast[name] - slow[name]).norm() / slow[name].norm().clamp_min(1e-300)
                assert float(error) <= tolerance, name
        # a loss is −log softmax of logits that the same chain computes; its error is absolute (|∂loss/∂logit|
        # sums to at most 2), so at most twice the chain bound times the largest logit's size
        with torch.no_grad():
            logit_scale = float(model(inputs).abs().max())
        assert torch.allclose(fast_losses, slow_losses, rtol=0, atol=2 * tolerance * logit_scale)
    finally:
        model.float()


def test_projected_ascent_step_leaves_retain_losses_unchanged_to_first_order(mid_unlearning, image_sets, recipe):
    """In float64, after one α=0 step of small length η, retain losses move ≤ 1 % of what plain ascent moves
    them; what is left is second order (it shrinks like η², the unprojected change like η)."""
    import copy

    model = copy.deepcopy(mid_unlearning[0]).double()
    params = trainable_parameters(model)
    forget, retain = image_sets["forget"], image_sets["retain"]
    forget_inputs, forget_labels = forget.batch(torch.arange(32))
    retain_inputs, retain_labels = retain.batch(torch.arange(64))
    forget_batch, retain_batch = (forget_inputs.double(), forget_labels), (retain_inputs.double(), retain_labels)
    start = {n: p.detach().clone() for n, p in params.items()}

    def retain_losses():
        with torch.no_grad():
            return per_sample_losses(model(retain_batch[0]), retain_batch[1])

    base = retain_losses()
    changes = {}
    for retain_grads in ("per_sample", "none"):
        spec = recipe.method.model_copy(deep=True)
        spec.projection.scope, spec.projection.retain_grads, spec.alpha = "global", retain_grads, 0.0
        direction = orthograd_direction(model, params, forget_batch, retain_batch, spec, mean_loss)
        # short steps: a ReLU whose input lies within a step of its kink makes a longer step look first order
        # (a resnet18 trained on an Intel Xeon had one within 1e-4: ratio 16 at (1e-4, 1e-5), 99 at these)
        for step in (1e-6, 1e-7):
            apply_update(params, direction.update, step, None)
            changes[retain_grads, step] = float((retain_losses() - base).abs().max())
            with torch.no_grad():
                for n, p in params.items():
                    p.copy_(start[n])
    assert changes["none", 1e-6] > 0
    assert changes["per_sample", 1e-6] <= 0.01 * changes["none", 1e-6], changes
    # first order scales like η (ratio 10 for a 10× shorter step), second order like η² (ratio 100)
    assert changes["none", 1e-6] / changes["none", 1e-7] == pytest.approx(10, rel=0.2), changes
    assert changes["per_sample", 1e-6] / changes["per_sample", 1e-7] >= 50, changes


def test_auto_backend_uses_vmap_where_hooks_do_not_apply(trained_model, recipe, image_sets):
    """Full-parameter training includes BatchNorm weights, which the hooks backend cannot handle."""
    from orthograd_cli.gradients import hooks

    checkpoint, info = load_checkpoint_and_info(trained_model, recipe)
    model = load_model(checkpoint, info).eval()
    params = {n: p for n, p in model.named_parameters() if n.startswith(("layer4.1", "fc"))}
    assert not hooks.supports(model, params)
    retain = image_sets["retain"]
    inputs, labels = retain.batch(torch.arange(4))
    auto, _ = per_sample_grads(model, params, inputs, labels, mean_loss, "auto")
    slow, _ = per_sample_grads(model, params, inputs, labels, mean_loss, "loop")
    for name in params:
        assert float((auto[name] - slow[name]).norm() / slow[name].norm().clamp_min(1e-30)) <= 1e-4, name
    with pytest.raises(RecipeError, match="backend: hooks"):
        per_sample_grads(model, params, inputs, labels, mean_loss, "hooks")


def test_simnpo_forget_gradient_is_minus_the_gradient_of_the_published_loss(mid_unlearning, image_sets):
    """SimNPO with γ = 0 descends L = mean (2/β)·softplus(−β·ℓᵢ) (ℓᵢ a sample's cross-entropy): g_u, which
    OrthoGrad ascends, must be −∇L, in float64, while the loss it reports stays the plain mean."""
    import copy

    import torch.nn.functional as F

    from orthograd_cli.methods.orthograd import forget_loss_fn
    from orthograd_cli.recipe import MethodSpec

    beta = 20.0
    spec = MethodSpec.model_validate({"orthograd": {"forget_loss": "simnpo", "simnpo_beta": beta}})
    model = copy.deepcopy(mid_unlearning[0]).double()
    params = trainable_parameters(model)
    inputs, labels = image_sets["forget"].batch(torch.arange(32))
    inputs = inputs.double()
    got, reported = batch_grad(model, params, inputs, labels, forget_loss_fn(spec, mean_loss))
    losses = F.cross_entropy(model(inputs), labels, reduction="none")
    published = (2 / beta * F.softplus(-beta * losses)).mean()
    reference = dict(zip(params, torch.autograd.grad(published, list(params.values()))))
    flat = lambda grads: torch.cat([grads[n].reshape(-1) for n in params])  # noqa: E731
    assert float((flat(got) + flat(reference)).norm() / flat(reference).norm()) <= 1e-10
    assert float(reported) == pytest.approx(float(losses.detach().mean()), abs=1e-12)
    plain, _ = batch_grad(model, params, inputs, labels, mean_loss)
    assert float((flat(got) - flat(plain)).norm() / flat(plain).norm()) >= 0.05, "the weights changed nothing"
