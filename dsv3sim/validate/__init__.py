"""Real-run validation: launch the executable model as a torch.distributed job (torchrun), measure it,
simulate the same scenario, and compare. See NOTES.md beside this file for the design."""
