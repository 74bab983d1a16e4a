"""Fine-tuning open_clip models on paired shards: `marsbench train`, its torchrun workers
(`python -m marsbench.training`) and the trainer app (`marsbench.training.app:create_app`)."""
