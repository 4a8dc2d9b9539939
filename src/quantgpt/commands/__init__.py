"""One module per `quantgpt` command: NAME, HELP, add_arguments(parser), run(args) -> exit status."""
