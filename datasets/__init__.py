"""Dataset loaders and synthetic systems (installed as ``ssmts.datasets``)."""
