"""``python -m torchrl_sparse fit|evaluate|sweep|report``: see :mod:`torchrl_sparse.commands`."""

from torchrl_sparse.commands import main

if __name__ == "__main__":
    main()
