"""The ``lfubench`` command line: the top of the house.

It reads arguments, calls ``studies`` (plans, the item pipeline, the engine), ``bench`` (the
instruments) and ``reports``, and turns a user's mistake into one line on stderr. Nothing in
``models``, ``bench``, ``studies`` or ``reports`` imports it. One module per subcommand; see
:mod:`lfubench.cli`.
"""
