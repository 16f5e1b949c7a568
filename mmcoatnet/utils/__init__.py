"""What the tools under tools/ share: command-line plumbing, checks before a run, launch set-up,
sizes, results files, memory figures, the backbone tools' training step, the training-memory
simulation and compile counts. Nothing here is imported by the model, the engine or the checkpoint
adapter."""
