"""``python -m ownervault.cli``: the ``ownervault`` command line."""

from . import main

if __name__ == "__main__":  # pragma: no cover
    main()
