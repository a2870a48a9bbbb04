"""The ``finetune`` subcommand (being written)."""


def add_parsers(subparsers) -> None:
    return None
