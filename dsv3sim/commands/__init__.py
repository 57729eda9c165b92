"""CLI subcommands, one module each (see dsv3sim/cli.py for the contract)."""
