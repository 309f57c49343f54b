"""``python -m dumpling_async``: the ``dumpling-async`` command line."""

from .cli import main

if __name__ == "__main__":
    main()
