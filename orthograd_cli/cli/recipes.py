"""`orthograd recipes ls | show | validate`: the shipped recipes and checking your own."""

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="List, show and validate recipes.", no_args_is_help=True, rich_markup_mode=None,
                  epilog="Examples:\n\n  orthograd recipes ls\n\n  orthograd recipes show resnet18_digits_class"
                         "\n\n  orthograd recipes validate my_recipe.yaml")


@app.command("ls")
def list_recipes() -> None:
    """List the shipped recipes with their first comment line."""
    from orthograd_cli.recipe import shipped_recipes_dir

    for path in sorted(shipped_recipes_dir().glob("*.yaml")):
        first = next((line.lstrip("# ").strip() for line in path.read_text().splitlines() if line.startswith("#")), "")
        print(f"{path.stem:40s} {first}")


@app.command("show")
def show(name: Annotated[str, typer.Argument(help="Shipped recipe name, a file, or 'default'.")]) -> None:
    """Print a recipe: the file as shipped, or the full schema defaults for 'default'."""
    import yaml

    from orthograd_cli.recipe import Recipe, resolve_recipe_path

    if name == "default":
        print(yaml.safe_dump(Recipe().model_dump(mode="json"), sort_keys=False), end="")
    else:
        print(resolve_recipe_path(name).read_text(), end="")


@app.command("validate")
def validate(path: Annotated[Path, typer.Argument(help="Recipe YAML file (or shipped name) to check.")]) -> None:
    """Check a recipe against the schema; exit 2 with the key path on the first problem."""
    from orthograd_cli.recipe import load_recipe

    _, sha = load_recipe(str(path))
    print(f"ok: {path} (sha256 {sha[:12]}…)")
