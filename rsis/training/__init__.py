"""The train stage: the training loop over epochs (fit), one epoch's steps (engine), the staged
schedule of losses, curriculum and learning rates (schedule), and DDP plumbing (distributed)."""
