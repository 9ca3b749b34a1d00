"""``python -m torchrl_sparse fit --config recipes/<condition>.yaml``."""

from torchrl_sparse.lightning.cli import main

if __name__ == "__main__":
    main()
