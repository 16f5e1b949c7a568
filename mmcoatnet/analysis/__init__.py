"""What the tools measure with: a process's resident memory, the backbone tools' training step, one
synthetic batch for the whole-model tools, the attention FLOP formula, the training-memory
simulation and compile counts. It stands on the model and on the tools' plumbing (``utils``: the
ToolError a tool prints); nothing in the model, the engine or the checkpoint adapter imports it."""
