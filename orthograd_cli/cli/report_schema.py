"""`orthograd report-schema`: the JSON schema of every report the commands write."""

from typing import Annotated, Optional

import typer

from orthograd_cli.cli import options

EPILOG = """\
Examples:

  orthograd report-schema                 # every command's report schema, with the schema_version

  orthograd report-schema forget > forget.schema.json
"""


def report_schema(
    command: Annotated[Optional[str], typer.Argument(help="Only this command's report (forget, evaluate, ...).")] = None,
    as_json: options.Json = False,
    quiet: options.Quiet = False,
) -> None:
    """Print the JSON schema of the reports (report.json, --json output); `schema_version` says which."""
    import json

    from orthograd_cli.cli.output import Output
    from orthograd_cli.errors import UsageError, did_you_mean
    from orthograd_cli.report import REPORTS, SCHEMA_VERSION, json_schema

    output = Output(as_json=as_json, quiet=quiet)
    if command is None:
        schema = json_schema()
    elif command in REPORTS:
        schema = {"schema_version": SCHEMA_VERSION, **REPORTS[command].model_json_schema()}
    else:
        raise UsageError(f"no report for '{command}'", did_you_mean(command, REPORTS) or
                         f"choose from {', '.join(REPORTS)}")
    output.result(schema, lambda: output.line(json.dumps(schema, indent=2)))
