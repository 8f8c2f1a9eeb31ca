"""`orthograd forget`: checkpoint + forget/retain sets → merged checkpoint, adapter and report.

Everything is written into a temporary folder beside the output folder and renamed into place at
the end, so an interrupted or failed run leaves no half-written output.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from orthograd_cli import distributed
from orthograd_cli.context import RunContext
from orthograd_cli.loading import Loaded, load_everything
from orthograd_cli.methods.observer import Observer
from orthograd_cli.metrics.evaluation import measure, metrics_from, score
from orthograd_cli.metrics.sanity import require_better_than_chance
from orthograd_cli.models.checkpoint import Checkpoint, save_checkpoint
from orthograd_cli.outputs import (check_not_an_input, check_output_file, check_output_folder, claimed_folder,
                                   clear_except)
from orthograd_cli.models.registry import checkpoint_state, load_model
from orthograd_cli.models.hf_folder import copy_companions
from orthograd_cli.recipe import Recipe, preprocessing_metadata
from orthograd_cli.card import CARD_NAME, card_text, write_card
from orthograd_cli.jobs.resume import STATE_FILE, Checkpointer, find_resumable, fingerprint, read_saved
from orthograd_cli.methods.state import LoopState
from orthograd_cli.jobs.proof import (CHANCE_HINT, COMPARISON_HINT, KEPT_HINT, Proof, chance_check, kept_check,
                                     target_hint)
from orthograd_cli.metrics.reference import add_reference_metrics
from orthograd_cli.report import Audit, BeforeAfter, ForgetReport, provenance, provenance_metadata, write_report
from orthograd_cli.runtime import pick_device

ADAM_NOTE = ("method.optimizer=adam rescales each coordinate of d, so the update is no longer exactly "
             "orthogonal to the retain gradients (the first-order guarantee holds only for normalized_sgd)")


def check_recipe_fits_task(recipe: Recipe, task) -> None:
    """Refuse, before any work, settings the task cannot run."""
    from orthograd_cli.methods import check_method_fits_task

    task.check_recipe(recipe)
    check_method_fits_task(recipe.method.name, task.name)


def run_forget(model_path: str, manifests: dict, recipe: Recipe, out_dir: str,
               overwrite: bool = False, arch: str | None = None, observer: Observer | None = None,
               extra_outputs: tuple = (), proof: Proof | None = None, resume: bool = False) -> ForgetReport:
    """Validate everything, claim `out_dir`, unlearn, and write the checkpoint, adapter, card and report into it.
    `extra_outputs`: other files the caller will write (a plot), checked with the same rules up front. `proof`:
    the requirements, the reference model and the command line (default: the recipe's requirements). `resume`:
    continue the interrupted run whose state lies beside `out_dir` (jobs/resume.py)."""
    proof = proof or Proof.of(recipe, None, "forget")
    saved = find_resumable(out_dir, "forget", resume)
    loaded = load_everything(model_path, recipe, manifests, arch)
    recipe = loaded.recipe  # with the checkpoint's recorded preprocessing
    check_recipe_fits_task(recipe, loaded.task)
    proof.check_task(loaded, original=True)
    reference = proof.reference(recipe, arch)
    inputs = [*loaded.input_paths, *([reference[0].path] if reference else [])]
    collective = distributed.start(pick_device(recipe.device))  # None in a single process
    context = RunContext.of(recipe, collective)
    try:
        tuning = None
        if recipe.method.tune.enabled:  # the search first: the real run is the chosen setting's
            check_fits_world(loaded, context.runtime.world_size)
            tuning, recipe = tuned(loaded, context, proof, observer)
            loaded = replace(loaded, recipe=recipe)
            context = RunContext.of(recipe, collective)
        restored = None
        if saved is not None:  # the same run as the interrupted one, or refused before anything changes
            restored = read_saved(saved, fingerprint(loaded, recipe, context.runtime.world_size,
                                                     reference[0].sha256 if reference else None))
        if collective is not None:
            check_fits_world(loaded, collective.world_size)
            if collective.rank != 0:  # the same steps and evaluations into a scratch folder; rank 0 writes
                with tempfile.TemporaryDirectory(prefix="orthograd-rank") as scratch:
                    _forget_into(loaded, context, Path(scratch), None, proof, restored)
                return None
        check_extra_outputs(loaded, out_dir, extra_outputs)
        with claimed_folder(out_dir, "forget", inputs, overwrite, output_bytes(loaded), loaded.sample_paths,
                            resume=saved, resumable=lambda folder: (folder / STATE_FILE).is_file()) as folder:
            if saved is not None:  # what the interrupted run began to write goes; its state stays
                clear_except(folder, {STATE_FILE})
            return forget_into(loaded, context, folder, Path(out_dir), observer, proof, restored, tuning)
    finally:
        distributed.stop(collective)


def tuned(loaded: Loaded, context: RunContext, proof: Proof, observer) -> tuple:
    """(the tuning record, the recipe with the chosen setting): jobs/tune.py on the validation splits."""
    from orthograd_cli.jobs.compare import real_target
    from orthograd_cli.jobs.sweep import with_setting
    from orthograd_cli.jobs.tune import tune

    tuning = tune(loaded, context, real_target(loaded, context.recipe, proof), observer)
    recipe = context.recipe if tuning.chosen is None else with_setting(context.recipe, tuning.chosen)
    return tuning, recipe


def check_forget(model_path: str, manifests: dict, recipe: Recipe, out_dir: str, world_size: int,
                 overwrite: bool = False, arch: str | None = None, extra_outputs: tuple = (),
                 proof: Proof | None = None, resume: bool = False) -> None:
    """What run_forget checks before it computes, for `world_size` processes, without claiming or computing:
    `forget --nproc N` checks once here before it starts N processes that would each fail the same way."""
    saved = find_resumable(out_dir, "forget", resume)
    loaded = load_everything(model_path, recipe, manifests, arch)
    check_recipe_fits_task(loaded.recipe, loaded.task)
    check_fits_world(loaded, world_size)
    if saved is not None:
        reference = (proof or Proof.of(recipe, None, "forget")).reference(loaded.recipe, arch)
        read_saved(saved, fingerprint(loaded, loaded.recipe, world_size, reference[0].sha256 if reference else None))
    check_extra_outputs(loaded, out_dir, extra_outputs)
    check_output_folder(out_dir, loaded.input_paths, overwrite, output_bytes(loaded), loaded.sample_paths)


def check_extra_outputs(loaded: Loaded, out_dir: str, extra_outputs: tuple) -> None:
    for path in extra_outputs:
        check_output_file(path, [*loaded.input_paths, out_dir])
        check_not_an_input(path, loaded.sample_paths, resolved=True)


def check_fits_world(loaded: Loaded, world_size: int) -> None:
    """Several processes run OrthoGrad only, and each needs a share of every batch as drawn: the recipe's batch
    sizes, capped by the forget and retain sets less their stop holdouts."""
    from orthograd_cli.errors import UsageError
    from orthograd_cli.methods.stop import UpdateSets

    if world_size <= 1:
        return
    spec = loaded.recipe.method
    if spec.tune.enabled:
        raise UsageError("--tune runs its candidates in one process", "drop --nproc, or tune first and run the "
                         "report's chosen setting with --set and --nproc")
    if spec.name != "orthograd":
        raise UsageError(f"method.name={spec.name} runs in one process only (--nproc 1); several "
                         "processes run orthograd", "drop --nproc or use method.name=orthograd")
    updates = UpdateSets.of(loaded.sets, spec.stop, loaded.recipe.seed)
    drawn = {"unlearn": min(spec.unlearn_batch_size, len(updates.forget)),
             "retain": min(spec.retain_batch_size, len(updates.retain))}
    role, smallest = min(drawn.items(), key=lambda item: item[1])
    if smallest < world_size:
        raise UsageError(f"{world_size} processes need every batch to hold at least {world_size} samples, and each "
                         f"{role} batch holds {smallest} (unlearn {drawn['unlearn']}, retain {drawn['retain']}: the "
                         "recipe's batch sizes capped by the sets' sizes)",
                         "use fewer processes, or larger sets and batches")


def output_bytes(loaded: Loaded) -> int:
    """About what a run writes: the merged checkpoint (the adapter and report are small beside it)."""
    return loaded.checkpoint.nbytes


def forget_into(loaded: Loaded, context: RunContext, folder: Path, final: Path, observer: Observer | None = None,
                proof: Proof | None = None, restored: LoopState | None = None, tuning=None) -> ForgetReport:
    """One forget run of `context.recipe` on inputs already loaded and validated, written into `folder` (renamed
    to `final` by the caller); `compare` reuses the loaded inputs (and the scored reference) across runs. The
    provenance's recipe sha256 is the context's, that of the recipe the report holds. `restored`: the state of the
    interrupted run to continue (jobs/resume.read_saved). `tuning`: the search that chose the recipe's setting."""
    proof = proof or Proof.of(context.recipe, None, "forget")
    report = _forget_into(loaded, context, folder, observer, proof, restored, tuning)
    report.outputs = {name: str(final / name) for name in ("model.safetensors", "adapter", CARD_NAME, "report.json")
                      if (folder / name).exists() or name == "report.json"}
    write_report(report, folder / "report.json")
    return report


def _forget_into(loaded: Loaded, context: RunContext, tmp_dir: Path, observer, proof: Proof,
                 restored: LoopState | None = None, tuning=None) -> ForgetReport:
    from orthograd_cli.methods import get_method
    from orthograd_cli.methods.loop import run_unlearning
    from orthograd_cli.methods.sampler import UnlearnSampler
    from orthograd_cli.methods.stop import DAMAGE_RULE, StopRule, UpdateSets, stop_target, watched_for_damage
    from orthograd_cli.models.lora import trainable_model

    recipe, runtime, collective = context.recipe, context.runtime, context.collective
    spec, task, batch = recipe.method, loaded.task, recipe.eval.batch_size
    updates = UpdateSets.of(loaded.sets, spec.stop, recipe.seed)
    sets = {**loaded.sets, **updates.holdouts()}
    forget_update, holdout, retain = updates.forget, updates.forget_holdout, updates.retain
    notes = list(loaded.notes)
    retain_batch_size = min(spec.retain_batch_size, len(retain))
    if retain_batch_size < spec.retain_batch_size:  # the paper's small-retain regime: every retain sample, each step
        whole = "the whole retain set" if updates.retain_holdout is None else "the retain set less its holdout"
        notes.append(f"method.retain_batch_size={spec.retain_batch_size} is larger than the retain set "
                     f"({len(retain)} samples to update on): k = {retain_batch_size}, {whole}, at every step")

    model = loaded.build_model(runtime.device)
    before = measure(model, sets, batch, runtime.device, task, collective)
    require_better_than_chance(before, task, loaded.info, loaded.checkpoint.path, recipe.eval.require_better_than_chance)
    reference_results = proof.reference_results(loaded, runtime.device, collective)
    target, target_source = stop_target(spec.stop, recipe.eval.mode, before, reference_results)
    model, params = trainable_model(model, recipe, loaded.info)
    direction_fn = get_method(spec.name).make(model, params, forget_update, retain, spec, task.mean_loss, context)
    sampler = UnlearnSampler(len(forget_update), retain.manifest.ids, spec.unlearn_batch_size, retain_batch_size,
                             recipe.seed)
    watched = watched_for_damage(sets) if spec.stop.max_damage is not None else []
    if "test" in watched:
        notes.append("method.stop.max_damage: the test set's accuracy decided which step was written, so the test "
                     "set no longer measures the output independently (a retain holdout alone keeps it out)")
    stop = StopRule(target, spec.stop.check_every, holdout or sets["forget"],
                    lambda m, dataset: score(task, m, dataset, batch, runtime.device, collective),
                    {name: sets[name] for name in ("forget_test", "test", "retain_holdout") if name in sets},
                    check_name="forget" if holdout is None else "forget_holdout", max_damage=spec.stop.max_damage,
                    baseline={name: before[name].accuracy for name in watched})
    reference_sha256 = proof.reference(recipe, None)[0].sha256 if proof.reference_path else None
    checkpointer = Checkpointer(tmp_dir, fingerprint(loaded, recipe, runtime.world_size, reference_sha256), recipe.run,
                                writes=runtime.is_main, restored=restored)
    with runtime.reproducible() as reproducibility:  # the steps and the merge decide the output's bytes
        result = run_unlearning(model, params, forget_update, retain, sampler, stop, direction_fn, task.mean_loss,
                                spec, runtime, observer, collective, checkpointer)
        prov = provenance(runtime.device, recipe.seed, base=loaded.checkpoint.sha256, recipe=context.recipe_sha256,
                          reference=reference_sha256,
                          **{f"manifest_{n}": m.sha256 for n, m in loaded.manifests.items()})
        metadata = {**loaded.checkpoint.metadata, **loaded.info.metadata(), **preprocessing_metadata(recipe.data),
                    **provenance_metadata(prov), "orthograd.mode": recipe.eval.mode}
        merged = _merged_weights(model, loaded, recipe, tmp_dir, metadata)
    prov.deterministic = reproducibility.deterministic
    if collective is not None:
        prov.world_size, prov.distributed_backend = collective.world_size, collective.backend
        prov.communicated_bytes_per_step = round(collective.sent_bytes / max(1, result.steps))
    output_sha256 = {"model.safetensors": save_checkpoint(merged, tmp_dir / "model.safetensors", metadata)}
    if loaded.checkpoint.is_folder:  # the output is a model folder too: config, processor and tokenizer files
        copy_companions(loaded.checkpoint.path, tmp_dir)

    # "after" is measured on the weights as written, so the report matches the file exactly
    unlearned = load_model(Checkpoint(path=tmp_dir / "model.safetensors", state_dict=merged), loaded.info)
    after = measure(unlearned.to(runtime.device).eval(), sets, batch, runtime.device, task, collective)
    mode, mia = recipe.eval.mode, recipe.eval.mia
    metrics = BeforeAfter(before=metrics_from(before, mode, task, before, mia, recipe.seed, target),
                          after=metrics_from(after, mode, task, before, mia, recipe.seed, target))
    reference_metrics = None
    if reference_results is not None:
        reference_metrics = metrics_from(reference_results, mode, task, before, mia, recipe.seed, target)
        for own, results in ((metrics.before, before), (metrics.after, after)):
            add_reference_metrics(own, results, reference_metrics, reference_results, mode, task.accuracy_name)
    warnings = []
    if result.steps == 0:
        warnings.append(f"nothing was unlearned: the forget data already meet the target before any step (forget "
                        f"{task.accuracy_name} {result.history[0][stop.watched]:.4f} <= {target:.4f}, "
                        f"{target_source}); the output's weights equal the input's")
    elif result.written_step == 0:
        warnings.append(f"nothing was unlearned: the first check (step {result.history[1]['step']}) already broke the "
                        f"damage limit, so the check before any step was written; the output's weights equal the "
                        "input's")
    if tuning is not None and not tuning.met:
        from orthograd_cli.jobs.tune import coarse_limit_hint

        coarse = coarse_limit_hint(tuning.val_unit, tuning.max_damage)
        warnings.append("--tune: no candidate met the constraints (" + tuning.constraints + "); the run used "
                        + (f"the best validation UIS, {tuning.chosen}" if tuning.chosen else "the recipe's setting")
                        + (f"; {coarse}" if coarse else ""))
    target_reached = result.stop_reason in ("target", "already_at_target")
    at_chance = chance_check(after, task, loaded.info)
    allowed_drop = recipe.eval.test_drop_allowed(task)
    if not at_chance[0]:
        warnings.append(f"the unlearned model is {at_chance[1]}: unlearning destroyed what it knew")
    verdict = proof.gate.verdict(
        metrics.after, metrics.before, reference_metrics,
        checks={"target_reached": (target_reached, result.stop_message), "not_at_chance": at_chance,
                "test_kept": kept_check(metrics.after, metrics.before, allowed_drop)},
        hints={"target_reached": target_hint(result.stop_reason, spec), "not_at_chance": CHANCE_HINT,
               "test_kept": KEPT_HINT.format(max_drop=allowed_drop, lr=spec.lr),
               "comparison": COMPARISON_HINT})
    report = ForgetReport(
        method=spec.name,
        task=task.name,
        mode=mode,
        steps=result.steps,
        written_step=result.written_step,
        written_rule=DAMAGE_RULE if spec.stop.max_damage is not None else "the last step",
        resumed_from_step=checkpointer.restored.step if checkpointer.restored else None,
        stop_reason=result.stop_reason,
        stop_message=result.stop_message,
        target_reached=target_reached,
        target_forget_acc=target,
        target_source=target_source,
        retain_batch_size=retain_batch_size,
        wall_s=round(result.wall_s, 3),
        trainable_parameters=int(sum(p.numel() for p in params.values())),
        metrics=metrics,
        reference=proof.reference_path,
        reference_metrics=reference_metrics,
        tuning=tuning,
        verdict=verdict,
        diagnostics=result.diagnostics,
        history=result.history,
        retain_ids_sha256=result.retain_ids_sha256,
        notes=notes + ([ADAM_NOTE] if spec.optimizer == "adam" else []) + warnings,
        warnings=warnings,
        recipe=recipe.model_dump(mode="json"),
        provenance=prov,
        audit=Audit(command_line=proof.command_line, data_sha256=loaded.data_sha256, output_sha256=output_sha256),
    )
    card = card_text(report, loaded.data_samples)
    write_card(card, tmp_dir)
    if (tmp_dir / "adapter").is_dir():  # `orthograd merge` of this adapter keeps this card (peft wrote its own)
        write_card(card, tmp_dir / "adapter")
    checkpointer.discard()  # finished: nothing to resume
    return report


def _merged_weights(model, loaded: Loaded, recipe: Recipe, tmp_dir: Path, metadata: dict) -> dict:
    """LoRA: save the adapter, then merge it exactly as `orthograd merge` would; else the trained weights."""
    if not recipe.lora.enabled:
        return checkpoint_state(model, loaded.info, loaded.checkpoint.state_dict)
    from orthograd_cli.models.lora import merge_adapter, save_adapter

    save_adapter(model, tmp_dir / "adapter", loaded.checkpoint.sha256, metadata)
    return merge_adapter(loaded.checkpoint, loaded.info, tmp_dir / "adapter")
