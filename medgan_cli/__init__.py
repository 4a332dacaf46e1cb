"""``medgan``: the command line for researchers, coordinators and hospital IT.

One module per command group, each registering its sub-commands with the parser that
:func:`medgan_cli.main.build_parser` builds (Flower's ``flwr/cli/`` layout). The commands
are thin: they parse arguments, call the library (``simulations``, ``medgan_core``,
``privacy``, ``server``, ``client``) and print.
"""
