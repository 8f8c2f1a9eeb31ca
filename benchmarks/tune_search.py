"""`forget --tune`'s plain grid against Optuna's TPE sampler, at the same budget, on the zoo's tune members.

Both search the same box on the same validation split (jobs/sweep.validation_split) under the same constraints
(jobs/tune.constraints: the real run's stop target, retain_val damage at most 0.02, a candidate ended at the
check that breaks the limit: our pruning) and the same step cap (jobs/tune.step_cap). The grid is the tool's:
the recipe's step length × 1, ½, ¼, ⅛ and α at the recipe's (else the method's default) and 0.5. Optuna (TPE,
3 random start-up trials, then its model) draws the step length log-uniformly in [⅛, 1] × the recipe's and α
uniformly in [0, 0.5], minimising the steps of a candidate that met the constraints, else max_steps + 1 + its
validation UIS. Per search: candidates that met the constraints, the chosen setting and its validation steps and
damage, the search's wall time; then the chosen setting's real run on the real sets (the test set, never seen by
either search): the forget accuracy, the others' change, steps.

Run: python benchmarks/tune_search.py [--member NAME ...] [--budget 8] [--cache DIR]   (needs `pip install optuna`;
the zoo as benchmarks/zoo_forget.py builds it)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orthograd_cli.jobs import sweep, tune  # noqa: E402


def loaded_member(member: dict):
    """The member's inputs loaded as `orthograd forget` loads them, its run context, its stop target and the proof
    that holds its reference (which sets a speech member's target, as `forget --reference` does)."""
    from orthograd_cli.context import RunContext
    from orthograd_cli.jobs.compare import real_target
    from orthograd_cli.jobs.proof import Proof
    from orthograd_cli.loading import load_everything
    from orthograd_cli.recipe import load_recipe

    recipe, _ = load_recipe(member["recipe"], member["sets"])
    manifests = {name: member[name] for name in ("forget", "retain", "test", "forget_test") if member.get(name)}
    proof = Proof.of(recipe, None, "forget", member["reference"])
    loaded = load_everything(member["model"], recipe, manifests)
    return loaded, RunContext.of(loaded.recipe, None), real_target(loaded, loaded.recipe, proof), proof


def grid_search(loaded, context, target: float, budget: int):
    recipe = with_budget(context.recipe, budget)
    tuning = tune.tune(replace(loaded, recipe=recipe), context.derive(recipe), target)
    return tuning.candidates, tune.chosen(tuning.candidates)


def optuna_search(loaded, context, target: float, budget: int, seed: int):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    recipe = context.recipe
    validation = sweep.validation_split(loaded, recipe.seed)
    study = optuna.create_study(direction="minimize",
                                sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=3))
    tried = []
    with tempfile.TemporaryDirectory() as scratch:
        for i in range(budget):
            trial = study.ask()
            setting = {"method.lr": trial.suggest_float("lr", recipe.method.lr / 8, recipe.method.lr, log=True),
                       "method.alpha": trial.suggest_float("alpha", 0.0, 0.5)}
            candidate = sweep.run_candidate(validation, context, setting,
                                            {**tune.constraints(recipe, target), **tune.step_cap(tried, recipe)},
                                            Path(scratch) / str(i))
            candidate.met = tune.met(candidate)
            tried.append(candidate)
            value = candidate.steps if candidate.met else recipe.method.max_steps + 1 + (candidate.score or 1.0)
            study.tell(trial, value)
    return tried, tune.chosen(tried)


def with_budget(recipe, budget: int):
    return sweep.with_setting(recipe, {"method.tune.enabled": True, "method.tune.budget_runs": budget})


def real_run(loaded, context, setting: dict, proof) -> dict:
    """The chosen setting on the real sets, under the recipe's own stop rule and the target the search used (as
    `forget --tune --reference` runs it)."""
    from orthograd_cli.jobs.forget import forget_into

    recipe = sweep.with_setting(context.recipe, setting)
    with tempfile.TemporaryDirectory() as scratch:
        report = forget_into(replace(loaded, recipe=recipe), context.derive(recipe), Path(scratch), Path(scratch),
                             proof=proof)
    before, after = report.metrics.before, report.metrics.after
    return {"forget": after["forget_acc"].value, "unseen": after["forget_test_acc"].value
            if "forget_test_acc" in after else None,
            "others": after["test_acc"].value - before["test_acc"].value, "steps": report.steps,
            "target_reached": report.target_reached}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--member", nargs="*", default=["tv_resnet18_raw24", "hf_vit_32", "ta_w2v2_norm_l3"])
    parser.add_argument("--budget", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "orthograd" / "zoo")
    args = parser.parse_args()
    rows = []
    for name in args.member:
        member = json.loads((args.cache / name / "member.json").read_text())
        loaded, context, target, proof = loaded_member(member)
        searches = [("grid", lambda: grid_search(loaded, context, target, args.budget))]
        searches += [(f"optuna TPE seed {seed}", lambda seed=seed: optuna_search(loaded, context, target,
                                                                                args.budget, seed))
                     for seed in range(args.seeds)]
        for search, run in searches:
            started = time.perf_counter()
            tried, best = run()
            wall = time.perf_counter() - started
            real = real_run(loaded, context, best.setting, proof) if best else None
            rows.append({"member": name, "search": search, "runs": len(tried), "met": sum(c.met for c in tried),
                         "chosen": best.setting if best else None, "chosen_met": bool(best and best.met),
                         "val_steps": best.steps if best else None, "val_damage": best.damage if best else None,
                         "search_s": wall, "real": real})
            print(json.dumps(rows[-1]), flush=True)
    print("\n| member | search | runs | met | chosen | validation steps | validation damage | search time | "
          "real run: forget acc | others' change | steps |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        chosen = ", ".join(f"{k.split('.')[-1]}={v:.3g}" for k, v in r["chosen"].items()) if r["chosen"] else "-"
        real = r["real"] or {}
        print(f"| {r['member']} | {r['search']} | {r['runs']} | {r['met']} | {chosen}"
              f"{'' if r['chosen_met'] else ' (none met)'} | {r['val_steps']} | {r['val_damage'] or 0:.3f} | "
              f"{r['search_s']:.0f} s | {real.get('forget', float('nan')):.3f} | "
              f"{real.get('others', float('nan')):+.3f} | {real.get('steps')} |")


if __name__ == "__main__":
    main()
