"""What the tools under tools/ share: command-line plumbing, the tools' error, checks before a run,
launch set-up, sizes and results files. What they measure with is in ``mmcoatnet.analysis``. Nothing
here is imported by the model, the engine or the checkpoint adapter."""
