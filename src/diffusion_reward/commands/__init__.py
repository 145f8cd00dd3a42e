"""One module per ``diffusion-reward`` subcommand: ``add_arguments(parser)`` and ``run(args) -> int``."""
