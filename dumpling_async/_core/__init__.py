"""The library's core: one request's pipeline and what it is built from.

Nothing here imports the client, the command line or the fake server; the client wires
these pieces together, and the public names are re-exported by ``dumpling_async``.
"""
