"""SFT training: the DeepSpeed config builder, the per-worker loop, checkpoints.

Ray-free: `loop.train_loop_per_worker` runs under Ray Train (jobs/train.py), under torchrun or
as a single process; Ray, torch and DeepSpeed are imported inside functions only.
"""
