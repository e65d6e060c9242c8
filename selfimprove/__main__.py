"""`python -m selfimprove ...`: the same CLI as the `selfimprove` command."""

from .cli import app

app(prog_name="selfimprove")
