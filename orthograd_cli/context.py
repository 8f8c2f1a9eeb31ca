"""What one run is, in one object: the recipe it runs (and so that recipe's sha256), where and how it computes
(the runtime), and the process group it belongs to.

A job makes one (`RunContext.of`) once it has the resolved recipe and has joined its process group, and
passes it down: the method's factory gets it, and with it the seed and the process group the step needs.
`compare` and `--sweep` derive one per run (`derive`), so each run's provenance names the recipe that run
used by construction. Nothing below jobs/ reads the environment or a process group of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from orthograd_cli.recipe import Recipe, recipe_sha256
from orthograd_cli.runtime import Runtime

if TYPE_CHECKING:
    from orthograd_cli.distributed import Collective


@dataclass(frozen=True)
class RunContext:
    recipe: Recipe  # resolved: overrides applied, the checkpoint's recorded preprocessing filled in
    runtime: Runtime
    collective: "Collective | None" = None  # None: a single process

    @classmethod
    def of(cls, recipe: Recipe, collective: "Collective | None" = None) -> "RunContext":
        rank, world_size = (collective.rank, collective.world_size) if collective else (0, 1)
        return cls(recipe=recipe, runtime=Runtime.from_recipe(recipe, rank, world_size), collective=collective)

    def derive(self, recipe: Recipe) -> "RunContext":
        """The context of a run with another recipe (a compared method, a seed, a swept setting) in the same
        process group."""
        return RunContext.of(recipe, self.collective)

    @property
    def recipe_sha256(self) -> str:
        return recipe_sha256(self.recipe)

    @property
    def seed(self) -> int:
        return self.recipe.seed
