"""One module per ``odecam`` subcommand. Each defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; :mod:`odecam.cli` lists them in :data:`COMMANDS`."""

#: subcommand modules, in the order ``odecam --help`` lists them
COMMANDS = [
    "demo",
    "live",
    "convert_fomm",
    "export",
    "bench",
    "serve",
    "send",
    "receive",
    "train",
    "prepare_faces",
    "eval",
]
