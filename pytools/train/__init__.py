"""The training compiler: update schemes, autodiff over the quantized graph, pruning and
reordering, producing one static training step that the runtime executes."""
