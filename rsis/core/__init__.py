"""The method itself, shared by every stage: the network (model), the Hungarian and ordered
step-to-object matching (matcher), the loss (criterion), and checkpoints (save, load, rebuild)."""
