"""SFT training: the DeepSpeed config builder, the per-worker loop, checkpoints.

Ray-free: `loop.worker_loop` runs under Ray Train (pipelines/train.py passes its session), under torchrun or
as a single process; Ray, torch and DeepSpeed are imported inside functions only.
"""
