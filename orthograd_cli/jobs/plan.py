"""`--dry-run`: everything a run would check, and what it would do, without reading the weights or writing.

The checkpoint is read from its header (shapes and dtypes), the model built on the meta device, the LoRA
adapters put on it as the run would, and one sample pushed through it on the meta device to learn the size
of its activations. From those shapes comes an estimate of the peak memory (memory_estimate below); with
`--probe N`, N real steps on the real weights measure the time per step.
"""

from __future__ import annotations

import time
from pathlib import Path

MIB = 2**20


def plan_run(command: str, model_path: str, manifests: dict, recipe, arch: str | None = None,
             world_size: int = 1, probe: int = 0, out: str | None = None, methods: list[str] | None = None,
             seeds: int = 1) -> dict:
    """The plan of `orthograd COMMAND` (forget, compare or evaluate) on these inputs, as a dict (`--json`);
    compare's `methods` are each checked against the task, and the plan is that of its first method's run."""
    import torch

    from orthograd_cli.jobs.forget import check_recipe_fits_task
    from orthograd_cli.loading import load_everything
    from orthograd_cli.methods.stop import UpdateSets
    from orthograd_cli.models.lora import lora_parameter_count, lora_targets
    from orthograd_cli.models.registry import build_model
    from orthograd_cli.runtime import pick_device

    loaded = load_everything(model_path, recipe, manifests, arch, recorded_mode=command == "evaluate", weights=False)
    recipe, task = loaded.recipe, loaded.task
    plan = {"command": command, "model": str(model_path), "out": str(out) if out else None, "task": task.name,
            "mode": recipe.eval.mode, "device": pick_device(recipe.device), "processes": world_size,
            "sets": {name: len(dataset) for name, dataset in loaded.sets.items()},
            "checkpoint": {"parameters": sum(t.numel() for t in loaded.checkpoint.state_dict.values()),
                           "bytes": loaded.checkpoint.nbytes}, "notes": list(loaded.notes)}
    with torch.device("meta"):
        model = build_model(loaded.info)
    sample = _meta_sample(loaded)
    activations = _activation_bytes(model, sample)
    if command == "evaluate":
        plan["memory"] = memory_estimate(loaded, activations, trainable=0, batch=0, k=0, copies=2)
        return plan
    if command == "compare":
        from orthograd_cli.jobs.compare import check_methods, with_method

        check_methods(methods)
        for method in methods:
            check_recipe_fits_task(with_method(recipe, method), task)
        recipe = with_method(recipe, methods[0])
        plan["runs"] = {"methods": methods, "seeds": seeds, "count": len(methods) * seeds}
    check_recipe_fits_task(recipe, task)
    if world_size > 1:  # `forget --nproc N --dry-run`: the method and the batch shares as the launcher checks them
        from orthograd_cli.jobs.forget import check_fits_world

        check_fits_world(loaded, world_size)
    spec = recipe.method
    if recipe.lora.enabled:  # the targets the run takes, checked as it checks them; peft (2 s to import) not needed
        targets = lora_targets(model, recipe.lora.target_modules or loaded.info.source.default_lora_targets(model))
        trainable = lora_parameter_count(model, targets, recipe.lora.r)
        backend = "hooks"  # LoRA's A and B are Linear/Conv layers, which hooks differentiates
    else:
        from orthograd_cli.gradients.per_sample import trainable_parameters

        params = trainable_parameters(model)
        targets, trainable, backend = [], sum(p.numel() for p in params.values()), _backend(spec, model, params)
    if spec.per_sample.backend != "auto":
        backend = spec.per_sample.backend
    updates = UpdateSets.of(loaded.sets, spec.stop, recipe.seed)
    k = min(spec.retain_batch_size, len(updates.retain))
    batch = min(spec.unlearn_batch_size, len(updates.forget))
    plan.update({
        "method": spec.name,
        "trainable_parameters": trainable,
        "lora": {"enabled": recipe.lora.enabled, "r": recipe.lora.r, "targets": targets}
        if recipe.lora.enabled else {"enabled": False},
        "batches": {"unlearn": batch, "retain_k": k, "eval": recipe.eval.batch_size},
        "per_sample_backend": {"recipe": spec.per_sample.backend, "runs": backend},
        "steps": {"max_steps": spec.max_steps, "check_every": spec.stop.check_every,
                  "max_minutes": spec.stop.max_minutes},
        "memory": memory_estimate(loaded, activations, trainable, batch, k),
    })
    if command == "forget" and recipe.method.tune.enabled:
        from orthograd_cli.jobs.tune import tune_plan

        plan["tune"] = tune_plan(loaded)
    if command == "compare":
        plan["note"] = (f"compare: {len(methods)} method(s) × {seeds} seed(s), one run after another; the lines "
                        f"above are {methods[0]}'s run")
    if probe:
        plan["probe"] = probe_steps(model_path, manifests, recipe, arch, probe)
    return plan


def memory_estimate(loaded, activations: dict, trainable: int, batch: int, k: int, copies: int = 4) -> dict:
    """Peak memory from the shapes: the runtime (measured: this process, which has loaded what a run loads but
    peft), `copies` float32 copies of the weights (forget: the checkpoint as read, the model, the merged output,
    the model measured after; evaluate: the checkpoint and the model), the decoded samples the cache keeps, and the
    larger of one step's working set and one evaluation batch's (two consecutive layer outputs). A step holds the
    (B_u + k) samples' activations three times over (the outputs the backward pass needs, their gradients, and the
    per-sample backend's copies of each layer's input and output gradient), the k per-sample gradient rows and the
    projection's copy of them."""
    weights = copies * 4 * sum(t.numel() for t in loaded.checkpoint.state_dict.values() if t.is_floating_point())
    data = min(sum(_decoded_bytes(dataset) for dataset in loaded.sets.values()),
               int(loaded.recipe.data.cache_gb * 2**30))
    step = 3 * (batch + k) * activations["total"] + 2 * k * trainable * 4
    evaluation = loaded.recipe.eval.batch_size * 2 * activations["largest"]
    runtime = _rss()
    parts = {"runtime": runtime, "weights": weights, "data": data, "working": max(step, evaluation)}
    return {"estimate_mib": round(sum(parts.values()) / MIB), "kind": "CPU RSS",
            "parts_mib": {name: round(value / MIB) for name, value in parts.items()}}


def probe_steps(model_path: str, manifests: dict, recipe, arch: str | None, steps: int) -> dict:
    """`--probe N`: N real steps on the real weights (nothing written): seconds per step, and the peak RSS seen."""
    import resource

    from orthograd_cli.context import RunContext
    from orthograd_cli.loading import load_everything
    from orthograd_cli.methods import get_method
    from orthograd_cli.methods.loop import apply_update
    from orthograd_cli.methods.sampler import UnlearnSampler
    from orthograd_cli.methods.stop import UpdateSets
    from orthograd_cli.models.lora import trainable_model

    loaded = load_everything(model_path, recipe, manifests, arch)
    recipe, context = loaded.recipe, RunContext.of(loaded.recipe)
    spec, runtime = recipe.method, context.runtime
    updates = UpdateSets.of(loaded.sets, spec.stop, recipe.seed)
    forget, retain = updates.forget, updates.retain
    model, params = trainable_model(loaded.build_model(runtime.device), recipe, loaded.info)
    direction_fn = get_method(spec.name).make(model, params, forget, retain, spec, loaded.task.mean_loss, context)
    sampler = UnlearnSampler(len(forget), retain.manifest.ids, spec.unlearn_batch_size,
                             min(spec.retain_batch_size, len(retain)), recipe.seed)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        forget_index, retain_index = sampler.next_step()
        with runtime.unlearning_passes():
            direction = direction_fn(model, params, forget.batch(forget_index, runtime.device),
                                     retain.batch(retain_index, runtime.device), spec, loaded.task.mean_loss)
        apply_update(params, direction.update, spec.lr, None)
        float(direction.unlearn_loss)  # wait for the device
        times.append(time.perf_counter() - started)
    timed = times[1:] or times  # the first step warms caches up
    return {"steps": steps, "seconds_per_step": round(sum(timed) / len(timed), 4),
            "first_step_s": round(times[0], 4),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MIB)}


def _backend(spec, model, params) -> str:
    """What `method.per_sample.backend: auto` runs on every weight: hooks where every trainable tensor is a
    Linear/Conv weight or bias, vmap otherwise (per_sample.py)."""
    from orthograd_cli.gradients import hooks

    return "hooks" if hooks.supports(model, params) else "vmap"


def _meta_sample(loaded):
    """One sample's model input as a padded batch holds it (the first 16 samples of a set, padded together, as
    the run's batches are), on the meta device (its shape and dtype; no value)."""
    import torch

    dataset = loaded.sets["forget" if "forget" in loaded.sets else next(iter(loaded.sets))]
    inputs, _ = dataset.batch(torch.arange(min(16, len(dataset))), "cpu")
    if isinstance(inputs, tuple):
        return tuple(t[:1].to("meta") if torch.is_tensor(t) else t for t in inputs)
    return inputs[:1].to("meta")


def _activation_bytes(model, sample) -> dict:
    """The bytes of every leaf module's output for one sample (a forward pass on the meta device), and the
    largest one."""
    import torch

    from orthograd_cli.gradients.batching import forward

    sizes = []

    def record(_module, _inputs, output):
        for tensor in output if isinstance(output, (tuple, list)) else (output,):
            if torch.is_tensor(tensor):
                sizes.append(tensor.numel() * tensor.element_size())

    handles = [m.register_forward_hook(record) for m in model.modules() if not list(m.children())]
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) == "sdpa":  # sdpa's mask reads the mask's values: none on meta
        config._attn_implementation = "eager"
    try:
        with torch.no_grad():
            forward(model.eval(), sample)
    finally:
        for handle in handles:
            handle.remove()
    return {"total": sum(sizes), "largest": max(sizes, default=0)}


def _decoded_bytes(dataset) -> int:
    """About what the decoded samples of a set take: a few decoded, scaled to the set."""
    import torch

    count = min(8, len(dataset))
    inputs, _ = dataset.batch(torch.arange(count), "cpu")
    tensors = inputs if isinstance(inputs, tuple) else (inputs,)
    return sum(t.numel() * t.element_size() for t in tensors if torch.is_tensor(t)) * len(dataset) // max(1, count)


def _rss() -> int:
    """This process's resident memory now (Linux /proc; else its peak so far)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        import os

        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def plan_lines(plan: dict) -> list[str]:
    """The plan for a terminal."""
    lines = [f"dry run: orthograd {plan['command']} {plan['model']} ({plan['task']}, {plan['mode']}-wise, "
             f"{plan['device']}, {plan['processes']} process(es)); nothing was written",
             "sets: " + ", ".join(f"{name} {size}" for name, size in plan["sets"].items()),
             f"checkpoint: {plan['checkpoint']['parameters']:,} parameters, "
             f"{plan['checkpoint']['bytes'] / MIB:.1f} MiB"]
    if "method" in plan:
        lora = plan["lora"]
        lines += [f"method: {plan['method']}, trainable parameters {plan['trainable_parameters']:,}"
                  + (f" (LoRA r={lora['r']} on {len(lora['targets'])} modules: {', '.join(lora['targets'][:6])}"
                     f"{', …' if len(lora['targets']) > 6 else ''})" if lora["enabled"] else " (every weight)"),
                  f"batches: unlearn {plan['batches']['unlearn']}, retain k = {plan['batches']['retain_k']}, "
                  f"eval {plan['batches']['eval']}; per-sample backend {plan['per_sample_backend']['runs']} "
                  f"(recipe: {plan['per_sample_backend']['recipe']})",
                  f"steps: at most {plan['steps']['max_steps']}, a check every {plan['steps']['check_every']}"
                  + (f", at most {plan['steps']['max_minutes']:g} min" if plan["steps"]["max_minutes"] else "")]
    if "tune" in plan:
        from orthograd_cli.jobs.tune import coarse_limit_hint, label

        tune = plan["tune"]
        minutes = tune["budget_minutes"]
        budget = f"{tune['budget_runs']} runs" + (f" or {minutes:g} min" if minutes else "")
        lines.append(f"tune: {len(tune['candidates'])} candidate(s) first (budget {budget}), each on the forget set "
                     f"with retain_fit {tune['retain_fit']} / retain_val {tune['retain_val']}, damage at most "
                     f"{tune['max_damage']:g}: " + "; ".join(label(c) for c in tune["candidates"])
                     + f"; the real run takes {tune['rule']}")
        coarse = coarse_limit_hint(tune["val_unit"], tune["max_damage"])
        if coarse:
            lines.append(f"tune: {coarse}")
    memory = plan["memory"]
    lines.append(f"peak memory ({memory['kind']}): about {memory['estimate_mib']:,} MiB ("
                 + ", ".join(f"{name} {value:,}" for name, value in memory["parts_mib"].items()) + ")")
    if "probe" in plan:
        probe = plan["probe"]
        bound = plan["steps"]["max_steps"] * probe["seconds_per_step"]
        lines.append(f"probe: {probe['seconds_per_step']:.3f} s per step over {probe['steps']} real steps (first "
                     f"{probe['first_step_s']:.3f} s); at most {bound:.0f} s of steps, plus the checks; peak RSS "
                     f"{probe['peak_rss_mib']:,} MiB")
    lines += [f"note: {note}" for note in plan["notes"]] + ([plan["note"]] if "note" in plan else [])
    return lines
