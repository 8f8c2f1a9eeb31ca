"""The `orthograd` Typer app and `main()`, which turns our errors into one line and an exit code.

Exit codes: 0 ok · 1 unexpected error · 2 usage, recipe or manifest error · 3 checkpoint error ·
4 numerical failure · 5 requirements not met (outputs written) · 129 hung up · 130 interrupted · 143 terminated. `--debug` (or ORTHOGRAD_DEBUG=1) shows full tracebacks.
Heavy imports (torch, peft) happen inside the commands so `--help` stays instant.
"""

from __future__ import annotations

import os
import sys

import typer

from orthograd_cli import __version__
from orthograd_cli.cli import compare, demo, evaluate, forget, inspect, merge, options, recipes, report_schema

EPILOG = """\
Examples:

  orthograd demo

  orthograd forget model.safetensors --forget forget.csv --retain retain.csv --test test.csv --out run/

  orthograd evaluate run/model.safetensors --forget forget.csv --test test.csv --original model.safetensors

  orthograd merge model.safetensors run/adapter --out merged.safetensors

  orthograd inspect model.safetensors --forget forget.csv --retain retain.csv

  orthograd compare model.safetensors --forget forget.csv --retain retain.csv --test test.csv --seeds 3

Exit codes: 0 ok, 1 unexpected, 2 usage/recipe/manifest, 3 checkpoint, 4 numerical failure,
5 requirements not met (outputs written), 129 hung up, 130 interrupted, 143 terminated.
"""

app = typer.Typer(
    name="orthograd",
    help="Make a trained model forget part of its training data (OrthoGrad unlearning on saved checkpoints).",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"orthograd {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Global options."""


app.command("forget", epilog=forget.EPILOG, cls=options.with_methods(forget.EPILOG))(forget.forget)
app.command("evaluate", epilog=evaluate.EPILOG)(evaluate.evaluate)
app.command("merge", epilog=merge.EPILOG)(merge.merge)
app.command("inspect", epilog=inspect.EPILOG)(inspect.inspect)
app.command("compare", epilog=compare.EPILOG, cls=options.with_methods(compare.EPILOG))(compare.compare)
app.command("demo", epilog=demo.EPILOG)(demo.demo)
app.command("report-schema", epilog=report_schema.EPILOG)(report_schema.report_schema)
app.add_typer(recipes.app, name="recipes")


def _print_error(message: str, hint: str | None, jsonl: bool = False) -> None:
    if jsonl:  # --log-format jsonl: every stderr line parses, the error too
        from orthograd_cli.cli.progress import emit

        emit("error", message=message, hint=hint)
        return
    line = f"error: {message}"
    if hint:
        line += f" (hint: {hint})"
    sys.stderr.write(line + "\n")


def _wants_jsonl(args: list[str]) -> bool:
    return "--log-format=jsonl" in args or any(a == "--log-format" and b == "jsonl" for a, b in zip(args, args[1:]))


def _terminated(signum, frame) -> None:
    raise SystemExit(143)  # unwinds like Ctrl-C, so temporary outputs are removed


def _hung_up(signum, frame) -> None:
    raise SystemExit(129)  # the terminal went away (SIGHUP): clean up like SIGTERM


def _install_signal_handlers() -> dict:
    """Ctrl-C must interrupt even when the shell started us with SIGINT ignored (background jobs);
    SIGTERM (schedulers, `timeout`) and SIGHUP (a closed terminal) clean up the same way. Returns the
    handlers they replace."""
    import signal

    handlers = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: _terminated, signal.SIGHUP: _hung_up}
    previous = {signum: signal.getsignal(signum) for signum in handlers}
    for signum, handler in handlers.items():
        signal.signal(signum, handler)
    return previous


def _restore_signal_handlers(previous: dict) -> None:
    """main() called in-process (tests, notebooks) leaves the caller's handlers as they were."""
    import signal

    for signum, handler in previous.items():
        if handler is not None:  # None: installed outside Python, cannot be put back
            signal.signal(signum, handler)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; known errors become one line on stderr and an exit code."""
    previous_handlers = _install_signal_handlers()
    try:
        _run(argv)
    finally:
        _restore_signal_handlers(previous_handlers)


def _click_exceptions():
    """The exception modules of the click that the installed Typer raises: Typer 0.29 bundles its own
    (typer._click), older ones use click itself; catching both holds for either."""
    import importlib

    found = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(importlib.import_module(name))
        except ImportError:
            pass
    return found


def _usage_error_line(err) -> str:
    """A click usage error as our one line: what is wrong, and where the help is."""
    ctx = getattr(err, "ctx", None)
    command = ctx.command_path if ctx is not None else "orthograd"
    return f"{err.format_message()} (hint: see `{command} --help`)"


def _forget_the_interrupt() -> None:
    """CPython notes a KeyboardInterrupt that leaves code run by `exec(<string>)` (dataclasses, torch's code
    generation) as unhandled even when we catch it, and a `python -m` process then kills itself with SIGINT at
    exit instead of returning our 130 (seen on 1 in 15 Ctrl-Cs). Each `exec` of a string clears that note first."""
    exec("pass")  # noqa: S102 - a constant string, run for its side effect on the interpreter's flag


def _run(argv: list[str] | None) -> None:
    import typer

    from orthograd_cli.errors import OrthogradError

    click_modules = _click_exceptions()
    click_errors = tuple(m.ClickException for m in click_modules)
    no_args = tuple(getattr(m, "NoArgsIsHelpError") for m in click_modules if hasattr(m, "NoArgsIsHelpError"))
    exits = (typer.Exit, *(m.Exit for m in click_modules if hasattr(m, "Exit")))
    aborts = (typer.Abort, KeyboardInterrupt, *(m.Abort for m in click_modules if hasattr(m, "Abort")))

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("ORTHOGRAD_DEBUG") == "1"
    from orthograd_cli.cli.launch import follow_launcher

    follow_launcher()  # a rank of `forget --nproc N` ends with its launcher
    command = typer.main.get_command(app)
    try:
        # Typer turns Ctrl-C into Exit(130) and, outside standalone mode, returns that code; `forget --nproc N`
        # relaunches these arguments as N processes
        code = command.main(args=args, prog_name="orthograd", standalone_mode=False, obj={"argv": args})
        if code == 130:
            raise KeyboardInterrupt
        if isinstance(code, int) and code:  # an Exit(code) outside standalone mode is returned, not raised
            sys.exit(code)
    except OrthogradError as err:
        if debug:
            raise
        _print_error(str(err), err.hint, _wants_jsonl(args))
        sys.exit(err.exit_code)
    except exits as done:
        sys.exit(done.exit_code)
    except no_args as err:  # a command (or the tool) called without arguments: its help, as a usage error
        sys.stderr.write(err.format_message() + "\n")
        sys.exit(2)
    except click_errors as err:
        sys.stderr.write(f"error: {_usage_error_line(err)}\n")
        sys.exit(err.exit_code if err.exit_code else 2)
    except aborts:
        sys.stderr.write("interrupted: nothing was written at the output path\n")
        _forget_the_interrupt()
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 - the last resort keeps pipelines readable
        if debug:
            raise
        _print_error(f"unexpected {type(err).__name__}: {err}", "rerun with --debug for the traceback and report it",
                     _wants_jsonl(args))
        sys.exit(1)
    sys.exit(0)
