"""The seams hold: one registry per concept, no task-name branches outside tasks/, nothing below cli/ that
imports cli/, no import cycles, no print() outside the output sink, --json and --quiet on every command."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "orthograd_cli"


def modules() -> dict[str, ast.Module]:
    """Every module of the package, by dotted name, parsed."""
    parsed = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        parsed[name] = ast.parse(path.read_text(), filename=str(path))
    return parsed


def imported(tree: ast.Module, module_level_only: bool) -> set[str]:
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    names = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("orthograd_cli"):
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names if alias.name.startswith("orthograd_cli")}
    return names


def test_no_module_outside_tasks_branches_on_a_task_name():
    from orthograd_cli.tasks import TASKS

    offenders = []
    for name, tree in modules().items():
        if name.startswith("orthograd_cli.tasks"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
                constants = {o.value for o in operands if isinstance(o, ast.Constant)}
                constants |= {e.value for o in operands if isinstance(o, (ast.Tuple, ast.List, ast.Set))
                              for e in o.elts if isinstance(e, ast.Constant)}
                if constants & set(TASKS):
                    offenders.append(f"{name} line {node.lineno}")
    assert not offenders


def test_nothing_below_cli_imports_cli():
    offenders = [name for name, tree in modules().items()
                 if not name.startswith("orthograd_cli.cli") and name != "orthograd_cli.__main__"
                 and any(m.startswith("orthograd_cli.cli") for m in imported(tree, module_level_only=False))]
    assert not offenders


def test_module_level_imports_have_no_cycles():
    parsed = modules()
    graph = {name: {m for m in imported(tree, module_level_only=True) if m in parsed and m != name}
             for name, tree in parsed.items()}
    # a package's __init__ importing its own submodules is how registries are built, not a cycle through them
    for name in graph:
        graph[name] = {m for m in graph[name] if not m.startswith(name + ".")}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " → ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])


def test_no_print_outside_the_output_sink():
    offenders = [f"{name} line {node.lineno}" for name, tree in modules().items()
                 for node in ast.walk(tree)
                 if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"]
    assert not offenders


def test_every_command_takes_json_and_quiet():
    import typer

    from orthograd_cli.cli.app import app

    root = typer.main.get_command(app)

    def leaves(command, path):
        if hasattr(command, "commands"):
            for name, child in command.commands.items():
                yield from leaves(child, path + [name])
        else:
            yield " ".join(path), command

    commands = dict(leaves(root, []))
    assert {"forget", "evaluate", "merge", "inspect", "compare", "demo", "report-schema", "recipes ls",
            "recipes show", "recipes validate"} <= set(commands)
    for name, command in commands.items():
        flags = {opt for param in command.params for opt in param.opts}
        assert {"--json", "--quiet"} <= flags, name


def test_method_lists_come_from_the_registry(cli):
    from orthograd_cli.methods import METHODS, help_list
    from orthograd_cli.recipe import default_recipe_with_all_method_settings, load_recipe

    for command in ("forget", "compare"):
        shown = cli(command, "--help").out
        assert all(f"  {name} " in shown for name in METHODS), command
    assert help_list().count("\n") == len(METHODS) - 1
    for name, info in METHODS.items():
        recipe, _ = load_recipe(None, [f"method.name={name}"])
        assert recipe.method.name == name
        if info.settings is not None:
            assert set(default_recipe_with_all_method_settings()["method"][name]) == set(info.settings.model_fields)
    refused = cli("forget", "m.safetensors", "--forget", "f.csv", "--retain", "r.csv", "--set", "method.name=orthogard")
    assert refused.code == 2 and "did you mean 'orthograd'" in refused.err
    assert cli("recipes", "show", "default").out.count("gamma:") == 1


def test_method_settings_are_recipe_keys_validated_by_the_methods_own_model():
    from orthograd_cli.errors import RecipeError
    from orthograd_cli.recipe import load_recipe

    recipe, _ = load_recipe(None, ["method.name=gdr_gma", "method.gdr_gma.gamma=50"])
    assert recipe.method.settings.gamma == 50 and recipe.method.settings.epsilon == 0.02
    assert recipe.model_dump()["method"]["gdr_gma"] == {"gamma": 50.0, "epsilon": 0.02}
    default, _ = load_recipe(None, [])
    assert "gdr_gma" not in default.model_dump()["method"]  # orthograd has no settings of its own
    for override, fragment in (("method.gdr_gma.gama=1", "did you mean 'gamma'"),
                               ("method.salun.salient_share=2", "key 'method.salun.salient_share'"),
                               ("method.gdr_gm.gamma=1", "did you mean 'gdr_gma'")):
        with pytest.raises(RecipeError) as caught:
            load_recipe(None, [override])
        assert fragment in f"{caught.value} (hint: {caught.value.hint})"


def test_report_schema_command_prints_every_report_with_its_version(cli):
    import json

    from orthograd_cli.report import SCHEMA_VERSION

    result = cli("report-schema", "--json")
    assert result.code == 0, result.err
    schema = json.loads(result.out)
    assert schema["schema_version"] == SCHEMA_VERSION
    assert {"forget", "evaluate", "compare", "inspect", "merge", "demo"} <= set(schema["reports"])
    assert {"schema_version", "metrics", "provenance"} <= set(schema["reports"]["forget"]["properties"])


def test_every_package_folder_is_listed_for_installation():
    import tomllib

    config = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    folders = {".".join(path.parent.relative_to(PACKAGE.parent).parts) for path in PACKAGE.rglob("__init__.py")}
    assert folders <= listed, folders - listed


def test_nothing_below_jobs_reads_the_environment_or_a_process_group_of_its_own():
    """A run's facts travel in its RunContext (context.py), made in jobs/: the process group is passed down, never
    looked up, and the environment is read where a process starts (cli/, jobs/, distributed.py, runtime.py)."""
    starts = ("orthograd_cli.cli", "orthograd_cli.jobs", "orthograd_cli.distributed", "orthograd_cli.runtime",
              "orthograd_cli.__main__")
    environment, groups = [], []
    for name, tree in modules().items():
        if name.startswith(starts):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv") and \
                    isinstance(node.value, ast.Name) and node.value.id == "os":
                environment.append(f"{name} line {node.lineno}")
        # the context names the Collective type only for annotations
        if name != "orthograd_cli.context" and "orthograd_cli.distributed" in imported(tree, module_level_only=False):
            groups.append(name)
    assert not environment and not groups, (environment, groups)
