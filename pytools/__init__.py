"""Host-side tools: build, flash, link, monitor and (later) the training compiler."""
