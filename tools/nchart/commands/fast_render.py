"""`nchart render` without click: importing click costs more than a third of what helm itself takes to
render, and every millisecond before helm starts adds to the command's time. A plain render invocation
is recognised here and run at once; anything else — help, a version flag, another command, an option
or form this parser does not know, a value click would refuse, any NCHART_* option variable — is left to
the click command, which defines the command line and says what is wrong. This parser only ever accepts
what click parses the same way: tests/nchart/test_fast_render.py holds it to click's own parse of a
corpus of command lines and to the render command's option list."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from ..core.names import DEFAULT_NAMESPACE, DEFAULT_RELEASE

# Option string -> (parameter, takes a value, repeatable), as the click render command declares them.
OPTIONS: dict[str, tuple[str, bool, bool]] = {
    "--env": ("env", True, False),
    "-e": ("env", True, False),
    "--values": ("values_files", True, True),
    "-f": ("values_files", True, True),
    "--set": ("set_values", True, True),
    "--set-json": ("set_json", True, True),
    "--output-dir": ("output_dir", True, False),
    "--output": ("output", True, False),
    "-o": ("output", True, False),
    "--values-only": ("values_only", False, False),
    "--release": ("release", True, False),
    "--namespace": ("namespace", True, False),
    "-n": ("namespace", True, False),
    "--kube-version": ("kube_version", True, False),
}
DEFAULTS: dict[str, Any] = {
    "env": None,
    "values_files": (),
    "set_values": (),
    "set_json": (),
    "output_dir": None,
    "output": "yaml",
    "values_only": False,
    "release": DEFAULT_RELEASE,
    "namespace": DEFAULT_NAMESPACE,
    "kube_version": None,
}
# -o/--output choices, and the defaults above, as the click command declares them from here.
OUTPUTS = ("yaml", "json")
# What --kube-version accepts (the click command checks it with this too).
KUBE_VERSION = re.compile(r"^v?\d+\.\d+(\.\d+)?$")


class _NotPlain(Exception):
    """The command line is not a plain render: leave it to click."""


def _group_options(argv: list[str]) -> tuple[str | None, list[str]]:
    """--root (the one group option a render takes here) and the arguments after `render`."""
    args, root = list(argv), None
    while args and args[0] != "render":
        if args[0] == "--root" and len(args) > 1 and not args[1].startswith("-"):
            root, args = args[1], args[2:]
        elif args[0].startswith("--root="):
            root, args = args[0].split("=", 1)[1], args[1:]
        else:
            raise _NotPlain
    if not args or (root is not None and (root == "" or Path(root).is_file())):
        raise _NotPlain
    return root, args[1:]


def _command_options(args: list[str]) -> dict[str, Any]:
    """The render command's parameters as click would set them, before its checks."""
    params: dict[str, Any] = {
        key: list(value) if isinstance(value, tuple) else value for key, value in DEFAULTS.items()
    }
    instance, index = None, 0
    while index < len(args):
        token = args[index]
        if not token.startswith("-"):
            if instance is not None:
                raise _NotPlain
            instance, index = token, index + 1
            continue
        name, has_value, attached = token.partition("=") if token.startswith("--") else (token, "", "")
        if name not in OPTIONS:
            raise _NotPlain
        parameter, takes_value, repeatable = OPTIONS[name]
        if not takes_value:
            if has_value:
                raise _NotPlain
            params[parameter], index = True, index + 1
            continue
        if has_value:
            value, index = attached, index + 1
        elif index + 1 < len(args) and not args[index + 1].startswith("-"):
            value, index = args[index + 1], index + 2
        else:
            raise _NotPlain
        if repeatable:
            params[parameter].append(value)
        else:
            params[parameter] = value
    if instance is None:
        raise _NotPlain
    params["instance"] = instance
    return params


def _checked(params: dict[str, Any]) -> dict[str, Any]:
    """Converted as click's parameter types convert them; _NotPlain where click would refuse them."""
    if params["output"] not in OUTPUTS:
        raise _NotPlain
    if params["kube_version"] is not None and not KUBE_VERSION.match(params["kube_version"]):
        raise _NotPlain
    files = tuple(Path(value) for value in params["values_files"])
    if any(not str(path) or path.is_dir() for path in files):
        raise _NotPlain
    if params["output_dir"] is not None:
        if not params["output_dir"] or Path(params["output_dir"]).is_file():
            raise _NotPlain
        params["output_dir"] = Path(params["output_dir"])
    return {
        **params,
        "values_files": files,
        "set_values": tuple(params["set_values"]),
        "set_json": tuple(params["set_json"]),
    }


def parse(argv: list[str], environ: dict[str, str]) -> tuple[str | None, dict[str, Any]] | None:
    """(--root, the render command's parameters) for a plain `[--root R] render INSTANCE [options]`,
    or None to leave it to click."""
    if any(name.startswith("NCHART_") and name != "NCHART_DEBUG" for name in environ):
        return None  # click's auto_envvar_prefix reads options from these
    try:
        root, args = _group_options(argv)
        return root, _checked(_command_options(args))
    except _NotPlain:
        return None


def try_fast_render(argv: list[str]) -> None:
    """Renders and exits when argv is a plain render; returns (having done nothing) otherwise."""
    parsed = parse(argv, dict(os.environ))
    if parsed is None:
        return
    root, params = parsed
    from ..errors import echo_error, run_guarded

    def render() -> None:
        from ..core.project import find_project
        from .render_run import run_render

        project = find_project(Path(root) if root else None, explicit=root is not None)
        run_render(project, **params)

    code = run_guarded(render, echo_error)
    # Done: leave without the interpreter's teardown of every loaded module (~10 ms of a ~170 ms
    # command), which has nothing left to do here — helm has been waited for, no file is open but these.
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = code or 141
    sys.stderr.flush()
    os._exit(code or 0)
