"""nametool's training stage (PyTorch): names -> windows -> the Bengio MLP -> checkpoint."""
