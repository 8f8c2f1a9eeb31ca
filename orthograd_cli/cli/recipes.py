"""`orthograd recipes ls | show | validate`: the shipped recipes and checking your own."""

from pathlib import Path
from typing import Annotated

import typer

from orthograd_cli.cli import options

app = typer.Typer(help="List, show and validate recipes.", no_args_is_help=True, rich_markup_mode=None,
                  epilog="Examples:\n\n  orthograd recipes ls\n\n  orthograd recipes show resnet18_digits_class"
                         "\n\n  orthograd recipes validate my_recipe.yaml\n\n  orthograd recipes show default --json")


@app.command("ls")
def list_recipes(as_json: options.Json = False, quiet: options.Quiet = False) -> None:
    """List the shipped recipes with their first comment line."""
    from orthograd_cli.cli.output import Output
    from orthograd_cli.recipe import shipped_recipes_dir

    output = Output(as_json=as_json, quiet=quiet)
    recipes = []
    for path in sorted(shipped_recipes_dir().glob("*.yaml")):
        first = next((line.lstrip("# ").strip() for line in path.read_text().splitlines() if line.startswith("#")), "")
        recipes.append({"name": path.stem, "description": first, "path": str(path)})
    output.result({"command": "recipes ls", "recipes": recipes},
                  lambda: [output.line(f"{r['name']:40s} {r['description']}") for r in recipes])


@app.command("show")
def show(name: Annotated[str, typer.Argument(help="Shipped recipe name, a file, or 'default'.")],
         as_json: options.Json = False, quiet: options.Quiet = False) -> None:
    """Print a recipe: the file as shipped, or every key with its default for 'default' (each method's own
    settings included). With --json, the recipe as resolved (defaults filled in)."""
    import yaml

    from orthograd_cli.cli.output import Output
    from orthograd_cli.recipe import default_recipe_with_all_method_settings, load_recipe, resolve_recipe_path

    output = Output(as_json=as_json, quiet=quiet)
    if name == "default":
        resolved = default_recipe_with_all_method_settings()
        text = yaml.safe_dump(resolved, sort_keys=False)
    else:
        path = resolve_recipe_path(name)
        resolved = load_recipe(str(path))[0].model_dump(mode="json")
        text = path.read_text()
    output.result({"command": "recipes show", "name": name, "recipe": resolved}, lambda: output.line(text.rstrip("\n")))


@app.command("validate")
def validate(path: Annotated[Path, typer.Argument(help="Recipe YAML file (or shipped name) to check.")],
             as_json: options.Json = False, quiet: options.Quiet = False) -> None:
    """Check a recipe against the schema; exit 2 with the key path on the first problem."""
    from orthograd_cli.cli.output import Output
    from orthograd_cli.recipe import load_recipe

    output = Output(as_json=as_json, quiet=quiet)
    _, sha = load_recipe(str(path))
    output.result({"command": "recipes validate", "path": str(path), "ok": True, "sha256": sha},
                  lambda: output.line(f"ok: {path} (sha256 {sha[:12]}…)"))
